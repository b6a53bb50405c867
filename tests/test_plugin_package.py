"""An outside package (tests/fixtures/flowkit_extra), pip-installed into a folder of its own, extends every
pluggable kind through entry points: a path, a time grid, a sampler, a dataset with its own metric and a
method that trains a second network with its own optimiser. flowkit's command line finds and uses them all;
nothing in flowkit's tree names them."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowkit.runtime.checkpoint import read_checkpoint
from tests.helpers import run_cli

FIXTURES = Path(__file__).parent / "fixtures"


def installed(root: Path, package: str) -> Path:
    """The fixture ``package`` installed by pip (no editable install, no network) into a folder on nobody's path."""
    source = shutil.copytree(FIXTURES / package, root / "src")  # a build writes into its source tree: not the repo's
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--target", str(root / "site"), str(source)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert any(p.name.startswith(f"{package}-0.1.0") and p.suffix == ".dist-info" for p in (root / "site").iterdir())
    return root / "site"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return installed(tmp_path_factory.mktemp("extra"), "flowkit_extra")


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A package each of whose units breaks its kind's contract in one way (tests/fixtures/flowkit_broken)."""
    return installed(tmp_path_factory.mktemp("broken"), "flowkit_broken")


def cli(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = run_cli(list(args), cwd=cwd, env_extra={"PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    return proc


def test_flowkit_list_shows_every_unit_of_the_outside_package(site, tmp_path):
    out = cli(site, tmp_path, "list").stdout
    for name, source in [("smoothstep", "flowkit_extra.path"), ("quadratic", "flowkit_extra.grid"),
                         ("ralston", "flowkit_extra.sampler"), ("ring", "flowkit_extra.dataset"),
                         ("learned_weight", "flowkit_extra.method")]:
        assert name in out and source in out, name
    assert "learned_weight" not in run_cli(["list"], cwd=tmp_path).stdout  # not installed: not there


def test_train_sample_eval_and_compare_use_the_outside_units(site, tmp_path):
    train = cli(site, tmp_path, "train", "data.target=ring", "path=smoothstep", "method=learned_weight",
                "trainer.max_steps=400", "optim.ema_decay=0.9", "model.width=64", "trainer.enable_progress_bar=false",
                "eval.n=500", "eval.repeats=1", "eval.solver=ralston:8", "eval.compare=[euler:8]", "run_root=runs")
    run = next((tmp_path / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    # the dataset's own metric: mean distance to the ring (the N(0, I) source sits ~1.75 from it; measured 0.87)
    assert summary["metric"] == "ring_error" and "ring_error (ralston:8)" in train.stdout
    rows = {r["solver"]: r for r in summary["rows"]}
    assert rows["ralston:8"]["nfe"] == 16 and rows["ralston:8"]["value"] < 1.2
    # the method's second network had its own optimiser, which stepped, and is checkpointed
    ckpt = read_checkpoint(run)
    assert len(ckpt["optimizer_states"]) == 2 and all(s["state"] for s in ckpt["optimizer_states"])
    assert any(k.startswith("networks.weighting.") for k in ckpt["state_dict"])
    assert ckpt["global_step"] == 400  # only the model's steps count

    sample = cli(site, tmp_path, "sample", f"ckpt={run}", "n=300", "solver=ralston:4", "grid=quadratic", "out=s.npy")
    assert "NFE 8" in sample.stdout
    evaluation = cli(site, tmp_path, "eval", f"ckpt={run}", "n=300", "repeats=1", "solver=ralston:4", "grid=quadratic",
                     "nll_n=50", "out=e.json")
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["metric"] == "ring_error" and result["ring_error"] < 1.2 and abs(result["mean_radius"] - 3) < 1
    assert "nll" in result and "mean_radius" in evaluation.stdout
    cli(site, tmp_path, "compare", f"ckpt={run}", "solvers=ralston:4,euler:4,dopri5", "grid=quadratic", "n=300",
        "out=cmp")
    compared = json.loads((tmp_path / "cmp.json").read_text())
    by = {r["solver"]: r for r in compared["rows"]}
    assert by["ralston:4"]["nfe"] == 8 and by["ralston:4"]["metric"] == "ring_error"
    # second order against first, on the same grid and noise: closer to the tight dopri5 solution
    assert by["ralston:4"]["error"] < by["euler:4"]["error"]


def test_the_outside_grid_reaches_the_sampler(site, tmp_path):
    """The quadratic grid crowds steps toward t = 1: Euler on it differs from Euler on the uniform grid."""
    code = ("import torch; from flowkit.samplers.grids import grid_times; from flowkit.paths import PATHS;"
            "print(grid_times('quadratic', PATHS.build({'name': 'rectified'}), 4).tolist())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(site)})
    assert proc.returncode == 0, proc.stderr
    assert [round(t, 4) for t in json.loads(proc.stdout)] == [0.0, 0.4375, 0.75, 0.9375, 1.0]


def test_a_method_whose_network_takes_a_step_size_it_declares_trains_samples_and_resumes(site, tmp_path):
    """The outside method declares a network input of its own (d, a step size: flowkit.models.Input) and its own
    sampler feeds it; nothing under flowkit/ names either."""
    assert "ring_stepsize" in cli(site, tmp_path, "list").stdout  # the package's recipe (flowkit.recipes)
    common = ["recipe=ring_stepsize", "trainer.enable_progress_bar=false", "run_root=runs",
              "trainer.checkpoint_every=100"]
    cli(site, tmp_path, "train", *common, "trainer.max_steps=300")
    run = next((tmp_path / "runs").iterdir())
    assert {k.split(".")[1] for k in read_checkpoint(run)["state_dict"]} == {"backbone", "input_d"}
    cli(site, tmp_path, "train", f"resume={run}", "trainer.max_steps=600", "trainer.enable_progress_bar=false")
    summary = json.loads((run / "summary.json").read_text())
    rows = {r["solver"]: r for r in summary["rows"]}
    assert summary["steps"] == 600 and rows["stepsize:1"]["nfe"] == 1 and rows["stepsize:4"]["nfe"] == 4
    # one jump of the step-size network lands nearer the ring than one Euler step of its own velocity (d = 0)
    assert rows["stepsize:1"]["value"] < rows["euler:1"]["value"], rows
    cli(site, tmp_path, "sample", f"ckpt={run}", "n=100", "solver=stepsize:2", "out=jumps.npy")


def test_units_that_break_their_contract_are_named_in_one_line_each_and_the_rest_works(broken, tmp_path):
    """Registration checks what it can (a name clash, a sampler without __call__, a grid that runs backwards):
    such a unit is skipped with one warning line naming it; what only shows in use (a dataset without a shape, a
    loss reduced to a scalar) is refused before training in one line naming the unit; never a traceback."""
    env = {"PYTHONPATH": str(broken)}
    listed = run_cli(["list"], cwd=tmp_path, env_extra=env)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    warnings = [line for line in listed.stderr.splitlines() if line.strip()]
    assert len(warnings) == 3 and all(line.startswith("warning: skipped") for line in warnings), listed.stderr
    for unit, why in [("flowkit_broken.units:Straight", "registered twice"),
                      ("flowkit_broken.units:NoCall", "defines no __call__"),
                      ("flowkit_broken.units:backwards", "expected 2 increasing times from 0 to 1")]:
        assert any(unit in line and why in line for line in warnings), unit
    assert "flowkit.paths.affine" in listed.stdout  # the built-in 'rectified' kept
    assert "shapeless" in listed.stdout and "scalar_loss" in listed.stdout

    short = ["trainer.max_steps=3", "eval.n=50", "eval.repeats=1", "eval.compare=[]", "run_root=runs",
             "trainer.enable_progress_bar=false"]
    for option, message in [("data.target=shapeless", "dataset Shapeless has shape=()"),
                            ("method=scalar_loss", "method 'scalar_loss': its loss term 'loss' has shape ()"),
                            ("eval.solver=nocall:4", "unknown sampler 'nocall'; valid: ")]:
        proc = run_cli(["train", option, *short], cwd=tmp_path, env_extra=env)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(errors) == 1 and message in errors[0], proc.stderr


def test_an_outside_distiller_gets_its_teacher_read_on_its_path_and_outlives_it(site, tmp_path):
    """The package's distiller asks for a teacher by annotation only (flowkit.teacher.Teacher). A VP teacher run is
    read on the student's rectified path; the student beats its own start, then samples, evaluates and resumes with
    the teacher deleted."""
    common = ["trainer.enable_progress_bar=false", "eval.n=500", "eval.repeats=1", "eval.compare=[]"]
    cli(site, tmp_path, "train", "recipe=rectified", "path=vp", "trainer.max_steps=600", "run_root=teacher", *common)
    teacher = next((tmp_path / "teacher").iterdir())
    teacher_w2 = json.loads((teacher / "summary.json").read_text())["rows"][0]["value"]
    cli(site, tmp_path, "train", "recipe=rectified", "method=velocity_distill", f"method.teacher={teacher}",
        "model.width=64", "trainer.max_steps=300", "trainer.checkpoint_every=100", "run_root=runs", *common)
    run = next((tmp_path / "runs").iterdir())
    cli(site, tmp_path, "train", f"resume={run}", "trainer.max_steps=600", *common[:1])  # training needs its teacher
    shutil.rmtree(teacher)
    summary = json.loads((run / "summary.json").read_text())
    # measured: teacher 1.29 (on vp), student 1.33 (on rectified), floor 1.18
    assert summary["steps"] == 600 and summary["rows"][0]["value"] < 1.2 * teacher_w2, (teacher_w2, summary)
    proc = run_cli(["train", f"resume={run}", "trainer.max_steps=700"], cwd=tmp_path, env_extra={"PYTHONPATH": str(site)})
    assert proc.returncode == 2 and "method 'velocity_distill': teacher: no checkpoint or run directory" in proc.stderr
    cli(site, tmp_path, "sample", f"ckpt={run}", "n=100", "solver=euler:4", "out=s.npy")
    cli(site, tmp_path, "eval", f"ckpt={run}", "n=200", "repeats=1", "solver=euler:8", "nll_n=20")
    cli(site, tmp_path, "compare", f"ckpt={run}", "n=200", "solvers=euler:4,dopri5", "out=cmp")
    cli(site, tmp_path, "invert", f"ckpt={run}", "in=s.npy", "out=z.npy", "solver=euler:8")
