"""The repository stands alone: every document a source file cites (``README.md`` and any other) is in it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITED = re.compile(r"\b([A-Z][A-Z_-]*\.md)\b")


def test_every_document_a_source_file_cites_is_in_the_repository():
    missing = [f"{path.relative_to(ROOT)}:{number}: {name}"
               for folder in ("flowkit", "plugins", "bench", "recipes", "tests")
               for path in sorted((ROOT / folder).rglob("*.py")) if path.name != Path(__file__).name
               for number, line in enumerate(path.read_text().splitlines(), start=1)
               for name in CITED.findall(line) if not list(ROOT.rglob(name))]
    assert not missing, "\n".join(missing)


def test_the_check_finds_a_citation():
    assert CITED.findall("Convention (NOTES.md): t=0") == ["NOTES.md"] and not CITED.findall("out/name.md")
