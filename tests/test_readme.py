"""The README's commands are the ones CI runs, and its tables name only what exists."""

import re
from pathlib import Path

from flowkit.config.schema import recipe_names

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    ci_line = [line for line in (ROOT / ".ci/run").read_text().splitlines() if "pytest" in line]
    assert len(ci_line) == 1
    assert ci_line[0].strip() in README


def test_readme_recipes_exist():
    # a literal name, not a placeholder (NAME) or the start of a file path (path/to/mine.yaml)
    named = set(re.findall(r"recipe=([a-z0-9_]+)(?![\w/.])", README))
    assert named and named <= set(recipe_names())


def python_blocks() -> list[str]:
    section = README.split("## Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_python_section_runs(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:  # one process, one namespace: the second block trains with the path it registers
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["x"].shape == (1000, 2) and namespace["logp"].shape == (100,)
    assert namespace["z"].shape == (100, 2) and len(namespace["rows"]) == 4
    assert namespace["custom"].dir.is_dir() and (tmp_path / "runs").is_dir()
