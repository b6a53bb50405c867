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

from flowkit.checkpoint import read_checkpoint
from tests.helpers import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "flowkit_extra"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The package installed by pip (no editable install, no network) into a folder on nobody's path."""
    root = tmp_path_factory.mktemp("extra")
    source = shutil.copytree(FIXTURE, root / "src")  # a build writes into its source tree: not into the repo's
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--target", str(root / "site"), str(source)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert any(p.name.startswith("flowkit_extra-0.1.0") and p.suffix == ".dist-info" for p in (root / "site").iterdir())
    return root / "site"


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
    code = ("import torch; from flowkit.grids import grid_times; from flowkit.paths import PATHS;"
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
