"""Registry: helpful errors, checked options, entry points (working and broken), name clashes."""

import sys
import textwrap
import re
import warnings

import pytest

from flowkit.errors import ConfigError
from flowkit.registry import Registry


def make_registry(tmp_path, monkeypatch, entry_points: str, modules: dict[str, str]) -> Registry:
    """A registry whose entry-point group comes from a fake installed distribution under tmp_path."""
    group = f"flowkit.test_{tmp_path.name}"
    dist = tmp_path / "fakeplugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{textwrap.dedent(entry_points)}")
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return Registry("thing", group)


class Widget:
    def __init__(self, size: int = 3, scale: float = 1.0, label: str = "w") -> None:
        self.size, self.scale, self.label = size, scale, label


def test_unknown_name_lists_valid_names_and_a_close_match():
    reg = Registry("widget", "flowkit.none")
    reg.add("circle", Widget)
    reg.add("square", Widget)
    with pytest.raises(ConfigError) as info:
        reg.get("cirle")
    assert str(info.value) == "unknown widget 'cirle'; valid: circle, square (did you mean 'circle'?)"


def test_build_checks_options_and_types():
    reg = Registry("widget", "flowkit.none")
    reg.add("w", Widget)
    built = reg.build({"name": "w", "size": 5, "scale": 2})
    assert (built.size, built.scale) == (5, 2.0) and isinstance(built.scale, float)
    with pytest.raises(ConfigError, match=r"widget 'w' has no option 'sise'; valid: label, scale, size \(did you mean 'size'\?\)"):
        reg.build({"name": "w", "sise": 5})
    with pytest.raises(ConfigError, match=r"widget.size='big': expected int"):
        reg.build({"name": "w", "size": "big"})
    with pytest.raises(ConfigError, match=r"widget.size=True: expected int"):
        reg.build({"name": "w", "size": True})


def test_same_name_from_two_sources_is_an_error_naming_both():
    reg = Registry("widget", "flowkit.none")
    reg.add("w", Widget)

    class Other:
        pass

    with pytest.raises(ConfigError, match=r"registered twice: by .*Widget and by .*Other"):
        reg.add("w", Other)


def test_entry_point_is_loaded_lazily(tmp_path, monkeypatch):
    reg = make_registry(tmp_path, monkeypatch, "good = goodmod:Thing\n", {"goodmod": "class Thing:\n    pass\n"})
    assert "goodmod" not in sys.modules
    assert reg.names() == ["good"]
    assert reg.get("good").__name__ == "Thing"


def test_broken_entry_point_warns_and_the_rest_still_works(tmp_path, monkeypatch):
    reg = make_registry(
        tmp_path, monkeypatch,
        "broken = brokenmod:Thing\ngood = goodmod2:Thing\n",
        {"brokenmod": "raise ImportError('boom')\n", "goodmod2": "class Thing:\n    pass\n"},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reg.names() == ["good"]
        reg.names()  # reported once, not on every lookup
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "skipped" in messages[0] and "'broken'" in messages[0] and "boom" in messages[0]


def test_two_plugins_registering_one_name_warn_once_naming_both_and_the_first_is_kept(tmp_path, monkeypatch):
    reg = make_registry(
        tmp_path, monkeypatch, "twin = twin_a:Thing\n",
        {"twin_a": "class Thing:\n    pass\n", "twin_b": "class Thing:\n    pass\n"},
    )
    second = tmp_path / "otherplugin-0.1.dist-info"
    second.mkdir()
    (second / "METADATA").write_text("Metadata-Version: 2.1\nName: otherplugin\nVersion: 0.1\n")
    (second / "entry_points.txt").write_text(f"[{reg.group}]\ntwin = twin_b:Thing\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reg.names() == ["twin"]  # listing never crashes
        kept = reg.get("twin")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and re.search(r"thing 'twin' is registered twice: by twin_[ab]:Thing and by "
                                            r"twin_[ab]:Thing", messages[0]), messages
    assert kept.__module__ in messages[0].split("registered twice: by ")[1].split(" and by ")[0]  # the first kept


def test_an_entry_point_that_breaks_its_kinds_contract_warns_and_is_skipped(tmp_path, monkeypatch):
    from flowkit.methods import check_method

    reg = make_registry(
        tmp_path, monkeypatch, "bad = badmethod:Bad\ngood = goodmethod:Good\n",
        {"badmethod": "from flowkit.methods import Method\nclass Bad(Method):\n    odee = False\n",
         "goodmethod": "from flowkit.methods import CFM\nclass Good(CFM):\n    pass\n"},
    )
    reg.check = check_method
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reg.names() == ["good"]
    assert len(caught) == 1 and "unknown capability 'odee'" in str(caught[0].message)
