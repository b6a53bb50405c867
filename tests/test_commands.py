"""`flowkit sample`, `eval` and `compare` on tiny trained checkpoints, and their bad input."""

import json
import math
import pickle

import numpy as np
import pytest
import torch

from flowkit.interface import commands
from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.errors import ConfigError
from flowkit.training.loop import train
from tests.helpers import run_cli, tiny


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmd")
    first = train(apply_overrides(load_recipe("rectified"), tiny(root, "optim.ema_decay=0.9", steps=150)))
    second = train(apply_overrides(load_recipe("ot_cfm"), tiny(root, "optim.ema_decay=0.9", steps=150)))
    return first.run_dir, second.run_dir


def test_sample_writes_pt_npy_png(runs, tmp_path):
    for name in ("s.pt", "s.npy", "s.png"):
        proc = run_cli(["sample", f"ckpt={runs[0]}", "n=300", "solver=rk4:8", f"out={tmp_path / name}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "NFE 32" in proc.stdout and (tmp_path / name).stat().st_size > 0
    assert torch.load(tmp_path / "s.pt").shape == (300, 2)
    assert np.load(tmp_path / "s.npy").shape == (300, 2)


def test_eval_reports_w2_mmd_straightness_nll(runs):
    result = commands.evaluate([f"ckpt={runs[0]}", "n=300", "repeats=2", "nll_n=50"])
    for key in ("w2", "w2_std", "mmd2", "straightness", "nll", "nfe"):
        assert key in result and math.isfinite(result[key]), key
    assert result["w2"] > 0 and result["straightness"] >= 0 and result["straightness_along"] == "dopri5"


def test_straightness_is_measured_along_the_fixed_step_sampler_asked_for(runs):
    """heun:8 is torchdiffeq's heun2 on 8 steps: one table, the sampler registry, names it for both."""
    from flowkit.config.build import load_run
    from flowkit.training.evaluate import straightness_along_paths
    from flowkit.samplers import Predictor

    result = commands.evaluate([f"ckpt={runs[0]}", "n=300", "repeats=1", "nll_n=20", "solver=heun:8"])
    assert result["straightness_along"] == "heun:8"
    _, parts = load_run(runs[0])
    x0 = parts.source.sample(300 * 1, torch.Generator().manual_seed(0))
    velocity = Predictor.of(parts.method, parts.model, parts.path).velocity_field(None)
    heun = straightness_along_paths(velocity, x0, {"method": "heun2", "steps": 8})
    assert result["straightness"] == pytest.approx(heun, rel=1e-6)
    assert heun != pytest.approx(straightness_along_paths(velocity, x0, {"method": "dopri5", "rtol": 1e-5,
                                                                          "atol": 1e-5}), rel=1e-3)


def test_compare_two_models_on_the_same_noise(runs, tmp_path):
    out = tmp_path / "cmp"
    proc = run_cli(["compare", f"ckpt={runs[0]},{runs[1]}", "solvers=euler:1,euler:4,rk4:4,dopri5", "n=300",
                    f"out={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.with_suffix(".json").read_text())
    assert out.with_suffix(".png").exists()
    rows = data["rows"]
    assert len(rows) == 8 and {r["name"] for r in rows} == {"rectified", "ot_cfm"}
    by = {(r["name"], r["solver"]): r for r in rows}
    for name in ("rectified", "ot_cfm"):
        assert by[(name, "euler:4")]["nfe"] == 4 and by[(name, "rk4:4")]["nfe"] == 16
        # the error against the tight reference shrinks with a better solver
        assert by[(name, "dopri5")]["error"] < by[(name, "rk4:4")]["error"] < by[(name, "euler:1")]["error"]


def test_compare_reports_the_training_summarys_numbers_means_over_repeats_with_the_floor(runs):
    """compare scored each sampler against one reference draw and showed no floor, so it read 0.1-0.2 W2 above the
    summary for the same sampler; it now draws as the summary does (the same n, repeats and seed: the same numbers)."""
    summary = json.loads((runs[0] / "summary.json").read_text())  # eval.n=200, eval.repeats=1, dopri5
    result = commands.compare([f"ckpt={runs[0]}", "solvers=dopri5,euler:4", "n=200", "repeats=1"])
    (dopri5,) = [r for r in result["rows"] if r["solver"] == "dopri5"]
    assert dopri5["value"] == summary["rows"][0]["value"] and result["floor"] == summary["floor"]
    five = commands.compare([f"ckpt={runs[0]}", "solvers=euler:4", "n=200", "repeats=5"])
    (row,) = five["rows"]
    assert row["std"] > 0 and five["floor_std"] > 0 and five["repeats"] == 5
    assert row["value"] > five["floor"]
    proc = run_cli(["compare", f"ckpt={runs[0]}", "solvers=euler:4", "n=200", "repeats=3", "out=c"], cwd=runs[0])
    assert proc.returncode == 0 and "mean ± std over 3 draws of n=200" in proc.stdout and "floor" in proc.stdout


def test_digits_eval_reports_fd_and_bits_per_dim(tmp_path):
    run = train(apply_overrides(load_recipe("digits_rectified"), [
        "trainer.max_steps=10", f"run_root={tmp_path / 'runs'}", "trainer.enable_progress_bar=false",
        "model.channels=8", "eval.solver=euler:2"]))
    result = commands.evaluate([f"ckpt={run.run_dir}", "n=100", "repeats=1", "solver=euler:4", "nll_n=16",
                                "rtol=1e-3", "atol=1e-3"])
    for key in ("fd", "classifier_accuracy", "class_balance", "bits_per_dim"):
        assert math.isfinite(result[key]), key
    assert result["classifier_accuracy"] > 0.9 and 0 <= result["class_balance"] <= 1


@pytest.mark.parametrize("verb", ["sample", "eval", "compare"])
def test_missing_ckpt_argument(verb, tmp_path):
    proc = run_cli([verb, "n=10"], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: ckpt=... is required (a run directory or a .ckpt file)"


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_bad_checkpoints_and_solvers_are_one_line_errors(runs, tmp_path):
    good = (runs[0] / "last.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(good[: len(good) // 3])
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.ckpt")
    with open(tmp_path / "evil.ckpt", "wb") as f:
        pickle.dump({"state_dict": Exploit()}, f, protocol=2)
    cases = [
        (f"ckpt={tmp_path / 'missing.ckpt'}", "no checkpoint or run directory at"),
        (f"ckpt={tmp_path / 'truncated.ckpt'}", "cannot be read: truncated or not a torch file"),
        (f"ckpt={tmp_path / 'foreign.ckpt'}", "is not a flowkit checkpoint"),
        (f"ckpt={tmp_path / 'evil.ckpt'}", "holds a reference to"),
    ]
    for arg, message in cases:
        proc = run_cli(["sample", arg, f"out={tmp_path / 'x.pt'}"], cwd=tmp_path)
        assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "pwned" not in proc.stdout
        if "evil" in arg:
            assert "print; refused" in proc.stderr
    assert not (tmp_path / "x.pt").exists()
    with pytest.raises(ConfigError, match="unknown sampler 'rk5'; valid: adaptive_heun, .* \\(did you mean 'rk4'\\?\\)"):
        commands.compare([f"ckpt={runs[0]}", "solvers=euler:1,rk5"])
    with pytest.raises(ConfigError, match="unsupported suffix '.csv'"):
        commands.sample([f"ckpt={runs[0]}", "out=x.csv"])
    with pytest.raises(ConfigError, match="device='tpu' is not one of"):
        commands.sample([f"ckpt={runs[0]}", "device=tpu"])


def test_a_user_array_of_digit_shape_gets_the_generic_metrics_never_the_digits_classifier(tmp_path, monkeypatch):
    from flowkit.metrics import digits_features
    from flowkit.data.digits import Digits

    np.save(tmp_path / "mine.npy", Digits("all").data.numpy()[:400])  # shape (400, 1, 8, 8), like digits
    run = train(apply_overrides(load_recipe("digits_rectified"), [
        "trainer.max_steps=5", f"run_root={tmp_path / 'runs'}", "trainer.enable_progress_bar=false",
        "model.channels=8", "eval.solver=euler:2", "eval.n=50", f"data.path={tmp_path / 'mine.npy'}"]))
    assert run.summary["metric"] == "W2"

    def refuse(*args, **kwargs):
        raise AssertionError("a user array was scored with the digits classifier")

    monkeypatch.setattr(digits_features, "digits_classifier", refuse)
    result = commands.evaluate([f"ckpt={run.run_dir}", "n=60", "repeats=1", "solver=euler:2", "nll_n=8",
                                "rtol=1e-3", "atol=1e-3"])
    assert result["metric"] == "W2" and math.isfinite(result["w2"]) and math.isfinite(result["mmd2"])
    assert "fd" not in result and "classifier_accuracy" not in result and "bits_per_dim" not in result


def test_invert_maps_data_back_and_reports_the_round_trip(runs, tmp_path):
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0)) * 2
    np.save(tmp_path / "x.npy", x.numpy())
    proc = run_cli(["invert", f"ckpt={runs[0]}", f"in={tmp_path / 'x.npy'}", f"out={tmp_path / 'z.npy'}",
                    "solver=dpm++2m:20", "grid=logsnr"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 200 source points" in proc.stdout and "grid logsnr" in proc.stdout and "round trip" in proc.stdout
    tight = commands.invert([f"ckpt={runs[0]}", f"in={tmp_path / 'x.npy'}", f"out={tmp_path / 'z.pt'}",
                             "solver=dopri5", "rtol=1e-7", "atol=1e-7"])
    assert tight["round_trip_rms"] < 1e-3 * tight["data_rms"] and tight["nfe"] > 10 and tight["grid"] is None
    z_tight, z_dpm = torch.load(tmp_path / "z.pt"), torch.from_numpy(np.load(tmp_path / "z.npy"))
    assert (z_dpm - z_tight).norm(dim=1).mean() < 0.1 * z_tight.norm(dim=1).mean()  # the same map, to 20 steps
    for args, message in [(["solver=em:10"], "sampler 'em:10' cannot invert"),
                          (["solver=renoise:2"], "sampler 'renoise' is not one of method 'cfm''s"),
                          ([f"in={tmp_path / 'missing.npy'}"], "in='.*missing.npy': no such file")]:
        proc = run_cli(["invert", f"ckpt={runs[0]}", f"in={tmp_path / 'x.npy'}", f"out={tmp_path / 'w.npy'}", *args],
                       cwd=tmp_path)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert __import__("re").search(message, proc.stderr), proc.stderr
    assert not (tmp_path / "w.npy").exists()
    np.save(tmp_path / "x3.npy", np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32))
    with pytest.raises(ConfigError, match=r"points of shape \(3,\); this model's data are \(2,\)"):
        commands.invert([f"ckpt={runs[0]}", f"in={tmp_path / 'x3.npy'}", f"out={tmp_path / 'w.npy'}"])


def test_compare_runs_every_sampler_family_and_skips_stochastic_ones_on_coupled_pairs(runs, tmp_path):
    out = tmp_path / "families"
    result = commands.compare([f"ckpt={runs[0]},{runs[1]}", "solvers=ddim:4,dpm++2m:4,dpm++2m:8,em:20,edm:3",
                               "n=200", "grid=karras", f"out={out}"])
    by = {(r["name"], r["solver"]): r for r in result["rows"]}
    assert by[("rectified", "dpm++2m:8")]["nfe"] == 8 and by[("rectified", "edm:3")]["nfe"] == 4
    assert {r["grid"] for r in result["rows"]} == {"karras"}  # grid= names the grid of every fixed-step sampler
    assert math.isnan(by[("rectified", "em:20")]["error"]) and math.isfinite(by[("rectified", "ddim:4")]["error"])
    assert ("ot_cfm", "em:20") not in by and ("ot_cfm", "ddim:4") in by
    assert any("em:20: sampler 'em:20' is stochastic" in line and "coupling 'ot'" in line for line in result["skipped"])
    assert out.with_suffix(".png").stat().st_size > 0
    # no out=: beside the first run, not in the cwd; no grid=: each sampler on its own default grid
    result = commands.compare([f"ckpt={runs[0]}", "solvers=euler:2,dpm2:4,dopri5", "n=50"])
    assert [r["grid"] for r in result["rows"]] == ["uniform", "graded", None]
    assert (runs[0] / "compare.json").is_file() and (runs[0] / "compare.png").is_file()


@pytest.mark.parametrize("args, code, said", [
    (["solver=em:10:scale=1e300"], 1, "non-finite"),  # finite options, samples that overflow: checked before writing
    (["solver=edm:18:churn=40:noise=inf"], 2, "noise=inf: expected a finite number"),
    (["solver=ddim:10:eta=nan"], 2, "eta=nan: expected a finite number"),
    (["guidance=nan"], 2, "guidance=nan is out of range"),
    (["classifier_scale=inf", "classifier=x"], 2, "classifier_scale=inf is out of range"),
])
def test_non_finite_samples_are_never_written(runs, tmp_path, args, code, said):
    """NaN samples used to be written with exit 0 (em:10:scale=1e300, edm noise=inf, guidance=nan)."""
    for out in ("s.npy", "s.png"):
        proc = run_cli(["sample", f"ckpt={runs[0]}", "n=100", f"out={out}", *args], cwd=tmp_path)
        assert proc.returncode == code and said in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1 and not (tmp_path / out).exists()
        assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("args, said", [
    (["solver=euler:\u00b2"], "sampler 'euler:\u00b2'"),
    (["solver=euler:\u0664"], "sampler 'euler:\u0664'"),  # an Arabic-Indic four: a digit to Python, not to us
    (["seed=18446744073709551616"], "seed=18446744073709551616 is out of range"),
    (["seed=-1"], "seed=-1 is out of range"),
    (["grid=karras:1e-300", "solver=euler:4"], "grid 'karras:1e-300'"),
    (["grid=shift:1e300", "solver=euler:4"], "grid 'shift:1e300'"),
])
def test_numbers_that_cannot_be_used_are_one_line(runs, tmp_path, args, said):
    proc = run_cli(["sample", f"ckpt={runs[0]}", "n=20", "out=s.npy", *args], cwd=tmp_path)
    assert proc.returncode == 2 and said in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert not (tmp_path / "s.npy").exists()
