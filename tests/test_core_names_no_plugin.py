"""The core knows contracts, never a particular plugin: no module under flowkit/ names one, not even in a
comment or a docstring (an example that needs a plugin's name belongs to that plugin's documentation)."""

import re
from pathlib import Path

import flowkit

PLUGIN_NAMES = ("critic", "consistency", "meanflow", "mean flow", "progressive", "reflow", "adversarial",
                "noisy_classifier", "noisy classifier", "shortcut", "dmd", "distribution matching")


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


def test_the_core_decides_by_capabilities_not_by_a_units_name():
    """No comparison under flowkit/ with the name of a registered coupling, sampler, grid, dataset, encoder or
    feature network (``coupling_name == "independent"``, ``spec == "inception"``): what a unit can do is declared
    by the unit (``Coupling.independent``, a feature network's ``metric``, a sampler's ``stochastic``)."""
    from flowkit.interface.registries import all_registries

    kinds = ("coupling", "sampler", "grid", "dataset", "encoder", "feature network")
    names = sorted({n for r in all_registries() if r.kind in kinds for n in r.names()}, key=len, reverse=True)
    quoted = "|".join(re.escape(n) for n in names)
    pattern = re.compile(rf"""(==|!=)\s*["']({quoted})["']|\bin\s*[(\[{{]\s*["']({quoted})["']""")
    root = Path(flowkit.__file__).parent
    hits = [f"{path.relative_to(root.parent)}:{number}: {line.strip()}"
            for path in sorted(root.rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), start=1) if pattern.search(line.split("#")[0])]
    assert not hits, "\n".join(hits)
    assert pattern.search('return self.coupling_name == "independent"') and pattern.search('x in ("euler", "rk4")')
