"""Recipes and overrides against the typed schema."""

import pytest
import torch
from omegaconf import OmegaConf

from flowkit.config.build import build_parts
from flowkit.config.schema import apply_overrides, load_recipe, recipe_names, to_dict, validate
from flowkit.errors import ConfigError
from flowkit.methods import METHODS


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_loads_validates_and_builds(name):
    cfg = load_recipe(name)
    validate(cfg)
    if "" in (cfg.coupling.get("teacher"), cfg.method.get("teacher")):  # distillation recipes name their teacher on the CLI
        with pytest.raises(ConfigError, match="needs a teacher"):
            build_parts(to_dict(cfg))
        return
    parts = build_parts(to_dict(cfg))
    assert parts.model is not None and cfg.name == name


def test_required_recipes_exist():
    assert {"rectified", "ot_cfm", "vp", "cosine", "digits_rectified", "reflow", "reflow_distill", "progressive",
            "meanflow", "digits_meanflow", "cd", "ct", "digits_cd", "digits_ct", "adversarial",
            "digits_adversarial", "shortcut", "digits_shortcut", "dmd2", "digits_dmd2", "sct", "digits_sct", "scd",
            "digits_scd"} <= set(recipe_names())


def test_overrides_set_values_and_replace_components():
    cfg = apply_overrides(load_recipe("ot_cfm"), ["trainer.max_steps=2000", "optim.lr=3e-4", "path=cosine",
                                                  "data.source=8gaussians", "data.target=moons"])
    assert cfg.trainer.max_steps == 2000 and cfg.optim.lr == pytest.approx(3e-4)
    assert OmegaConf.to_container(cfg.path) == {"name": "cosine"}  # sigma_min of 'ot' does not leak over
    assert (cfg.data.source, cfg.data.target) == ("8gaussians", "moons")
    cfg = apply_overrides(cfg, ["path=ot", "path.sigma_min=0.01"])
    assert OmegaConf.to_container(cfg.path) == {"name": "ot", "sigma_min": 0.01}
    # a mapping with a name replaces the component whole (flowkit.train(model={"name": "dit", ...}) sends this):
    # the recipe's unet options (channels, mults) must not leak into the DiT
    cfg = apply_overrides(load_recipe("digits_rectified"), ["model={name: dit, hidden: 32}"])
    assert OmegaConf.to_container(cfg.model) == {"name": "dit", "hidden": 32}
    cfg = apply_overrides(cfg, ["model={hidden: 64}"])  # without a name: options set one by one
    assert OmegaConf.to_container(cfg.model) == {"name": "dit", "hidden": 64}


def test_a_dataset_takes_its_options_as_a_mapping_in_recipes_and_on_the_command_line(tmp_path):
    """data.target / data.source: NAME, NAME:ARG, or {name: ..., option: value}; key.option=value turns a name
    into a mapping, and a new name starts from the dataset's own defaults (as a component does)."""
    from flowkit.data.pair import build_pair

    cfg = apply_overrides(load_recipe("rectified"), ["data.target=moons", "data.target.noise=0.05",
                                                     "data.source=8gaussians", "data.source.scale=2"])
    assert OmegaConf.to_container(cfg.data.target) == {"name": "moons", "noise": 0.05}
    source, target = build_pair(cfg.data.source, cfg.data.target, None)
    assert target.noise == 0.05 and torch.allclose(source.centers.norm(dim=1), torch.full((8,), 2.0))
    quiet = apply_overrides(load_recipe("rectified"), ["data.target=moons", "data.target.noise=0.0"])
    noisy = apply_overrides(quiet, ["data.target=moons"])  # a name alone: the dataset's defaults again
    assert noisy.data.target == "moons"
    assert build_pair("gaussian", quiet.data.target, None)[1].noise == 0.0
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data: {target: {name: moons, noise: 0.0}, source: {name: 8gaussians, var: 0.01}}\n")
    cfg = load_recipe(str(recipe))
    assert build_pair(cfg.data.source, cfg.data.target, None)[0].std == pytest.approx(0.01 ** 0.25)
    with pytest.raises(ConfigError, match="dataset 'moons' has no option 'arms'; valid: even, noise"):
        build_pair("gaussian", apply_overrides(cfg, ["data.target.arms=5"]).data.target, None)
    with pytest.raises(ConfigError, match="expected a dataset name"):
        build_pair("gaussian", {"noise": 0.1}, None)


@pytest.mark.parametrize("tokens,message", [
    (["trainer.max_steps"], "is not an override; write key=value"),
    (["trainer.max_steps=abc"], "trainer.max_steps must be int"),
    (["trainer.max_step=5"], "unknown key 'trainer.max_step'.*did you mean 'trainer.max_steps'"),
    (["bogus=1"], "unknown key 'bogus'"),
    (["optim.lr=fast"], "optim.lr must be float"),
    (["9x=1"], "is not a dotted key"),
    (["path=3"], "expected a registered path name"),
])
def test_bad_overrides(tokens, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(load_recipe("rectified"), tokens)


@pytest.mark.parametrize("tokens,message", [
    (["trainer.max_steps=-5"], r"trainer.max_steps=-5 is out of range; expected >= 1"),
    (["optim.ema_decay=1.5"], r"optim.ema_decay=1.5 is out of range"),
    (["data.batch_size=0"], r"data.batch_size=0 is out of range"),
    (["optim.schedule=linear"], r"optim.schedule='linear' is out of range; expected one of: constant, cosine"),
])
def test_out_of_range_values(tokens, message):
    with pytest.raises(ConfigError, match=message):
        validate(apply_overrides(load_recipe("rectified"), tokens))


def test_unknown_recipe_suggests():
    with pytest.raises(ConfigError, match=r"unknown recipe 'rectifed'.*did you mean 'rectified'"):
        load_recipe("rectifed")


def test_recipe_file_path_and_unknown_key_in_recipe(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("path: {name: cosine}\ntrainer: {max_steps: 7}\n")
    assert load_recipe(str(good)).trainer.max_steps == 7
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {max_stepz: 7}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trainer.max_stepz'"):
        load_recipe(str(bad))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A tiny trained run per data kind, to stand as the teacher of the distillation recipes."""
    from flowkit.training.loop import train

    root = tmp_path_factory.mktemp("recipe-teachers")
    quiet = ["trainer.max_steps=3", "trainer.enable_progress_bar=false", "eval.n=20", "eval.repeats=1",
             "eval.compare=[]", "eval.solver=euler:2"]
    return {"2d": train(apply_overrides(load_recipe("rectified"), [*quiet, f"run_root={root}", "model.width=16"])).run_dir,
            "digits": train(apply_overrides(load_recipe("digits_rectified"),
                                            [*quiet, f"run_root={root}", "model.channels=8"])).run_dir}


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_trains_and_evaluates_with_its_own_samplers(name, teachers, tmp_path):
    """Each recipe, shrunk (3 steps, a small network), trains and samples with the eval samplers it names."""
    from flowkit.training.loop import train

    cfg = load_recipe(name)
    digits = cfg.data.target == "digits"
    teacher = str(teachers["digits" if digits else "2d"])
    small = {"unet": ["model.channels=8"], "adm": ["model.channels=8"], "dit": ["model.hidden=32", "model.depth=1", "model.heads=2"]}
    tokens = ["trainer.max_steps=3", "trainer.enable_progress_bar=false", "eval.n=20", "eval.repeats=1",
              f"run_root={tmp_path}", *small.get(cfg.model.name, ["model.width=16"])]
    if "teacher" in cfg.method:
        tokens.append(f"method.teacher={teacher}")
    if "teacher" in cfg.coupling:
        tokens += [f"coupling.teacher={teacher}", "coupling.pairs=64", "coupling.solver=euler:2"]
    if "student_steps" in cfg.method and cfg.method.name == "progressive":
        tokens.append("method.student_steps=2")
    if "critic_width" in cfg.method:
        tokens.append("method.critic_width=8")
    result = train(apply_overrides(cfg, tokens))
    if METHODS.get(cfg.method.name).classifier:  # not sampled: its accuracy along the path instead
        assert set(result.summary["classifier_accuracy"]) == {"acc@t=0.25", "acc@t=0.5", "acc@t=0.75", "acc@t=1"}
        return
    saved = OmegaConf.load(result.rounds[0].run_dir / "config.yaml").eval  # null keys chosen for the data
    solvers = [saved.solver, *saved.compare]
    assert saved.solver == (cfg.eval.solver or saved.solver) and None not in solvers
    assert [row["solver"] for row in result.rounds[0].summary["rows"]] == solvers
    assert all(row["nfe"] >= 1 for r in result.rounds for row in r.summary["rows"])
