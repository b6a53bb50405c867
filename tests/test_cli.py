"""The installed `flowkit` command: bad input, entry-point plugins, `list`, and a non-editable install."""

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
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
                 "cfm", "mlp", "unet", "8gaussians", "digits", "ot_cfm", "digits_rectified"):
        assert word in proc.stdout, word


def test_non_editable_install_finds_recipes_and_runs(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    assert (target / "flowkit" / "recipes" / "rectified.yaml").exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = subprocess.run([sys.executable, "-c", "from flowkit.config import recipe_dir; print(recipe_dir())"],
                           cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert where.stdout.strip() == str(target / "flowkit" / "recipes"), where.stderr
    proc = subprocess.run([str(target / "bin" / "flowkit"), "train", *tiny(tmp_path, steps=5)], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "W2 (dopri5)" in proc.stdout


def test_ddp_on_cpu_writes_one_run_directory(tmp_path):
    """Lightning re-runs the CLI for rank 1; both ranks must share rank 0's run directory."""
    proc = run_cli(["train", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp",
                    *tiny(tmp_path, steps=12)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "last.ckpt").exists()


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
        "nan.npy": "1 of 50 samples hold NaN or inf",
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
