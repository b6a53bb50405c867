"""The installed `flowkit` command: bad input, entry-point plugins, `list`, and the wheel in a fresh venv."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import run_cli, tiny

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args,message", [
    (["recipe=nope"], "unknown recipe 'nope'; valid: adversarial, cd, cosine,"),
    (["trainer.max_stepz=5"], "unknown key 'trainer.max_stepz'"),
    (["path=curvy"], "unknown path 'curvy'; valid: cosine, ot, rectified, vp"),
    (["coupling=emd"], "unknown coupling 'emd'; valid: independent, ot, reflow, sinkhorn"),
    (["trainer.max_steps=abc"], "trainer.max_steps must be int"),
    (["trainer.max_steps=-3"], "trainer.max_steps=-3 is out of range"),
    (["path=ot", "path.sigma_min=-0.5"], "sigma_min=-0.5 is out of range"),
    (["time.s=0"], "s=0.0 is out of range; expected s > 0"),
    (["max_steps"], "'max_steps' is not an override"),
    (["data.path=missing.npy"], "data.path='missing.npy': no such file"),
    (["resume=runs/none"], "no checkpoint or run directory at 'runs/none'"),
    (["resume=."], "run directory '.' has no last.ckpt"),
    (["trainer.strategy=bogus"], "trainer.strategy='bogus'"),
    (["trainer.devices=-1", "trainer.accelerator=cpu"], "trainer.devices='-1'"),
    (["eval.n=1000000000"], "eval.n=1000000000"),
    (["seed=18446744073709551616"], "seed=18446744073709551616 is out of range"),
])
def test_bad_input_is_one_line_with_exit_code_2_and_writes_nothing(tmp_path, args, message):
    proc = run_cli(["train", *args], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "runs").exists()


def write_plugin(root: Path) -> None:
    """A package 'installed' on PYTHONPATH: one good path and one broken entry point."""
    dist = root / "myflows-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myflows\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[flowkit.paths]\nquadratic = myflows:Quadratic\nbroken = myflows_broken:Nothing\n"
    )
    (root / "myflows.py").write_text(textwrap.dedent('''
        from flowkit.paths import AffinePath

        class Quadratic(AffinePath):
            """alpha = t^2, sigma = 1 - t^2."""
            def alpha(self, t): return t**2
            def sigma(self, t): return 1 - t**2
            def d_alpha(self, t): return 2 * t
            def d_sigma(self, t): return -2 * t
    '''))
    (root / "myflows_broken.py").write_text("raise RuntimeError('this plugin is broken')\n")


def test_entry_point_path_trains_and_a_broken_one_is_skipped(tmp_path):
    write_plugin(tmp_path / "site")
    env = {"PYTHONPATH": str(tmp_path / "site")}
    proc = run_cli(["train", "path=quadratic", *tiny(tmp_path)], cwd=tmp_path, env_extra=env)
    assert proc.returncode == 0, proc.stderr
    assert "W2 (dopri5)" in proc.stdout
    assert "skipped flowkit.paths entry point 'broken'" in proc.stderr and "this plugin is broken" in proc.stderr
    listing = run_cli(["list"], cwd=tmp_path, env_extra=env)
    assert listing.returncode == 0 and "quadratic" in listing.stdout and "myflows.Quadratic" in listing.stdout


def test_list_shows_every_registry_and_recipe(tmp_path):
    proc = run_cli(["list"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for word in ("rectified", "cosine", "vp", "independent", "sinkhorn", "logit_normal", "cosmap", "mode",
                 "cfm", "mlp", "unet", "8gaussians", "digits", "ot_cfm", "digits_rectified", "space-to-depth",
                 "autoencoder-kl", "shards"):
        assert word in proc.stdout, word


def test_every_unit_and_recipe_has_a_summary_of_whole_sentences():
    import flowkit

    entries = flowkit.catalogue()
    assert {e.kind for e in entries} == {"path", "coupling", "time sampler", "method", "sampler", "grid", "model",
                                         "dataset", "encoder", "feature network", "recipe"}
    for e in entries:
        if e.kind != "recipe" and not e.source.startswith("flowkit."):
            continue  # a unit another test registered in this process
        assert e.summary.endswith(".") and e.summary.count("(") == e.summary.count(")"), (e.kind, e.name, e.summary)
        assert "\n" not in e.summary and "  " not in e.summary


@pytest.mark.parametrize("args", [["list"], ["--help"], ["train", "--help"], ["train", "recipe=nope"],
                                  ["train", "path=curvy"], ["sample"]])
def test_help_list_and_usage_errors_do_not_import_lightning(tmp_path, args):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "flowkit", *args], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=300)
    assert proc.returncode in (0, 2), proc.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert imported and not [m for m in imported if m.split(".")[0] in ("lightning", "pytorch_lightning", "ot")]


def _borrowed_site_packages(into: Path) -> Path:
    """This environment's installed packages without flowkit itself (its editable finder and dist-info): links
    a fresh venv reads through a .pth line, since nothing can be downloaded. Lines of .pth files inside a
    directory named by a .pth line are not processed, so flowkit cannot come in through them."""
    import site

    into.mkdir()
    for directory in site.getsitepackages():
        for item in Path(directory).iterdir():
            if not item.name.lower().startswith(("flowkit", "__editable__")) and not (into / item.name).exists():
                (into / item.name).symlink_to(item)
    return into


def test_the_wheel_installs_only_flowkit_and_runs_in_a_fresh_venv(tmp_path):
    import shutil
    import zipfile

    # Built from a clean copy of the sources: a build/ left in the checkout would carry stale files into the wheel.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis"))
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(wheels), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("flowkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"flowkit", wheel.name.split("-py")[0] + ".dist-info"}
    for inside in ("flowkit/interface/cli.py", "flowkit/plugins/reflow/coupling.py", "flowkit/recipes/rectified.yaml",
                   "flowkit/py.typed"):
        assert inside in names, inside
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "flowkit = flowkit.interface:main" in entry_points and "= plugins." not in entry_points

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    (site_dir,) = venv.glob("lib/python*/site-packages")
    (site_dir / "borrowed.pth").write_text(str(_borrowed_site_packages(tmp_path / "borrowed")) + "\n")
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
                                "--quiet", "--no-deps", str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    assert not (site_dir / "cli.py").exists() and not (site_dir / "plugins").exists()

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["COLUMNS"] = "200"
    run = tmp_path / "elsewhere"
    run.mkdir()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import flowkit, flowkit.config.schema as c; "
                            "print(flowkit.__file__); print(c.recipe_dir())"],
                           cwd=run, capture_output=True, text=True, env=env, timeout=120)
    assert where.returncode == 0, where.stderr
    assert where.stdout.split() == [str(site_dir / "flowkit" / "__init__.py"), str(site_dir / "flowkit" / "recipes")]
    for command in ([str(venv / "bin" / "flowkit"), "list"], [str(venv / "bin" / "python"), "-m", "flowkit", "list"]):
        listed = subprocess.run(command, cwd=run, capture_output=True, text=True, env=env, timeout=300)
        assert listed.returncode == 0, listed.stderr
        assert "flowkit.plugins.reflow.coupling.ReflowCoupling" in listed.stdout and "digits_vp" in listed.stdout
        assert "skipped" not in listed.stderr, listed.stderr
    trained = subprocess.run([str(venv / "bin" / "flowkit"), "train", *tiny(run, steps=5)], cwd=run,
                             capture_output=True, text=True, env=env, timeout=300)
    assert trained.returncode == 0, trained.stderr
    assert "W2 (dopri5)" in trained.stdout


def test_ddp_on_cpu_trains_the_unet_in_two_gloo_processes_into_one_run_directory(tmp_path):
    """Lightning re-runs the CLI for rank 1; both ranks share rank 0's run directory, and rank 1's batches count:
    the weights differ from the same run in one process (same seed, same steps)."""
    unet = ["recipe=digits_rectified", "model.channels=8", "eval.solver=euler:2", "eval.compare=[]", "eval.repeats=1",
            "eval.n=50", "trainer.enable_progress_bar=false"]
    weights = {}
    for devices in (2, 1):
        root = tmp_path / f"on{devices}"
        proc = run_cli(["train", "trainer.accelerator=cpu", f"trainer.devices={devices}",
                        f"trainer.strategy={'ddp' if devices == 2 else 'auto'}", *unet, "trainer.max_steps=3",
                        f"run_root={root / 'runs'}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        runs = list((root / "runs").iterdir())
        assert len(runs) == 1 and (runs[0] / "last.ckpt").exists()
        summary = json.loads((runs[0] / "summary.json").read_text())
        assert summary["world_size"] == devices and summary["steps"] == 3
        state = torch.load(runs[0] / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
        weights[devices] = torch.cat([v.flatten().float() for k, v in sorted(state.items()) if "model" in k])
    assert torch.isfinite(weights[2]).all() and not torch.equal(weights[2], weights[1])


def test_bad_user_arrays_through_the_cli(tmp_path):
    import numpy as np

    good = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    with_nan = good.copy()
    with_nan[3, 0] = np.nan
    np.save(tmp_path / "nan.npy", with_nan)
    np.save(tmp_path / "flat.npy", good[:, 0])
    np.save(tmp_path / "empty.npy", good[:0])
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases = {
        "nan.npy": "1 of 50 samples hold NaN, inf or values beyond",
        "flat.npy": "expected an array of shape (n >= 1, *data_shape); got (50,)",
        "empty.npy": "expected an array of shape (n >= 1, *data_shape); got (0, 2)",
        "objects.npy": "not a plain numeric .npy array",
    }
    for name, message in cases.items():
        proc = run_cli(["train", f"data.path={tmp_path / name}", f"run_root={tmp_path / 'runs'}"], cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_train_help_lists_the_schema_and_print_config_resolves_without_training(tmp_path):
    proc = run_cli(["train", "--help"], cwd=tmp_path)
    assert proc.returncode == 0
    assert re.search(r"trainer\.max_steps\s+int = 10000\s+\(>= 1\)", proc.stdout), proc.stdout
    assert re.search(r"optim\.schedule\s+str = constant\s+\(one of: constant, cosine\)", proc.stdout)
    proc = run_cli(["train", "recipe=digits_vp", "trainer.max_steps=7", "--print-config"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    printed = yaml.safe_load(proc.stdout)
    assert printed["path"]["name"] == "vp" and printed["trainer"]["max_steps"] == 7 and printed["name"] == "digits_vp"
    assert not (tmp_path / "runs").exists()
    proc = run_cli(["train", "optim.lr=-1", "--print-config"], cwd=tmp_path)
    assert proc.returncode == 2 and "optim.lr" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_python_dash_m_flowkit_is_the_cli(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "flowkit", "list"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300)
    assert proc.returncode == 0 and "dpm++2m" in proc.stdout and "logsnr" in proc.stdout


@pytest.mark.parametrize("args, literal", [
    (["train", "recipe=[/x]"], "[/x]"),
    (["train", "recipe=[bold]x"], "recipe '[bold]x'"),
    (["sample", "ckpt=runs/[bold]nope"], "runs/[bold]nope"),
    (["train", "trainer.logger=wandb", "trainer.max_steps=1"], "pip install 'flowkit[wandb]'"),
])
def test_values_with_square_brackets_are_printed_as_they_are(tmp_path, args, literal):
    """Messages are never read as rich markup: '[/x]' raised MarkupError, '[bold]' vanished, '[wandb]' was lost."""
    if "trainer.logger=wandb" in args:
        import importlib.util

        if importlib.util.find_spec("wandb") is not None:
            pytest.skip("wandb is installed here")
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert literal in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_a_run_root_with_square_brackets_is_printed_as_it_is(tmp_path):
    proc = run_cli(["train", *tiny(tmp_path, steps=3), "run_root=r[red]x"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "run directory: r[red]x/" in proc.stdout.replace("\n", "")
