"""The core knows contracts, never a particular plugin: no module under flowkit/ names one, not even in a
comment or a docstring (an example that needs a plugin's name belongs to that plugin's documentation)."""

import re
from pathlib import Path

import flowkit

PLUGIN_NAMES = ("critic", "consistency", "meanflow", "mean flow", "progressive", "reflow", "adversarial",
                "noisy_classifier", "noisy classifier")


def test_no_module_under_flowkit_mentions_a_plugin():
    root = Path(flowkit.__file__).parent
    pattern = re.compile("|".join(re.escape(n) for n in PLUGIN_NAMES), re.IGNORECASE)
    hits = [f"{path.relative_to(root.parent)}:{number}: {line.strip()}"
            for path in sorted(root.rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), start=1) if pattern.search(line)]
    assert not hits, "\n".join(hits)


def test_the_check_itself_finds_a_mention(tmp_path):
    pattern = re.compile("|".join(re.escape(n) for n in PLUGIN_NAMES), re.IGNORECASE)
    assert pattern.search("# as in MeanFlow's sampler") and pattern.search("a Critic network")
    assert not pattern.search("a velocity field; the rectified path")
