"""The README's commands are the ones CI runs, and its tables name only what exists."""

import re
from pathlib import Path

from flowkit.config import recipe_names

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_ci_runs_the_readme_test_command():
    ci_line = [line for line in (ROOT / ".ci/run").read_text().splitlines() if "pytest" in line]
    assert len(ci_line) == 1
    assert ci_line[0].strip() in README


def test_readme_recipes_exist():
    named = set(re.findall(r"recipe=(\w+)", README))
    assert named and named <= set(recipe_names())
