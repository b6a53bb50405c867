"""Faults: kill -9 and resume, atomic saves, non-finite losses and gradients, determinism, fuzzed overrides."""

import contextlib

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flowkit.runtime.checkpoint import read_checkpoint
from flowkit.config.schema import apply_overrides, load_recipe, validate
from flowkit.errors import ConfigError, TrainingError
from flowkit.methods import CFM, register_method
from flowkit.training.loop import train
from flowkit.training.trainer import AtomicCheckpointIO
from tests.helpers import killed, run_cli, tiny

KILL_RUN = ["trainer.max_steps=300", "trainer.checkpoint_every=25", "coupling=ot", "optim.warmup_steps=20"]


# A consistency-training run also carries a target network (the method's own state) through the resume.
KILL_CT = ["recipe=ct", "method.mu0=0.9", "method.schedule=ct", "method.s0=2", "method.s1=40", *KILL_RUN[:2]]


# An adversarial run carries two players, each with its own optimizer and schedule (teacher added below).
KILL_ADV = ["recipe=adversarial", "method.critic_width=32", "optim.warmup_steps=20", *KILL_RUN[:2]]
# DMD2 trains a fake flow (a copy of the model) five steps per generator step; Shortcut draws its step sizes.
KILL_DMD = ["recipe=dmd2", "method.fake_updates=2", "optim.warmup_steps=20", *KILL_RUN[:2]]
KILL_SHORTCUT = ["recipe=shortcut", *KILL_RUN]
# sCT steps its network, then the adaptive weighting's lambda(t) on that step's errors: two optimisers.
KILL_SCT = ["recipe=sct", "method.tangent_warmup=50", *KILL_RUN[:2]]


def weights(run_dir):
    """Every tensor a resume must restore: EMA and raw weights (critic included), the target network,
    and each optimizer's moments."""
    ckpt = read_checkpoint(run_dir)
    target = ckpt["flowkit"].get("method_state", {}).get("target", {})
    moments = {f"opt{i}.{p}.{name}": v for i, opt in enumerate(ckpt["optimizer_states"])
               for p, state in opt["state"].items() for name, v in state.items()}
    schedules = {f"sched{i}": torch.tensor(s["last_epoch"]) for i, s in enumerate(ckpt["lr_schedulers"])}
    return ckpt["global_step"], {**ckpt["state_dict"], **{f"raw.{k}": v for k, v in ckpt["current_model_state"].items()},
                                 **{f"target.{k}": v for k, v in target.items()}, **moments, **schedules}


@pytest.mark.parametrize("run", [KILL_RUN, KILL_CT, KILL_ADV, KILL_DMD, KILL_SHORTCUT, KILL_SCT],
                         ids=["cfm-ot", "ct-with-target-ema", "adversarial", "dmd2", "shortcut", "sct"])
def test_kill_9_mid_run_then_resume_ends_bit_identical_to_an_uninterrupted_run(tmp_path, run):
    if run is KILL_ADV or run is KILL_DMD:
        teacher = train(apply_overrides(load_recipe("rectified"), tiny(tmp_path / "teacher", steps=30))).run_dir
        run = [*run, f"method.teacher={teacher}"]
    killed_root = tmp_path / "killed"
    killed(["train", *tiny(killed_root, *run, steps=300)], tmp_path, lambda: list(killed_root.glob("runs/*/last.ckpt")))
    (run_dir,) = list((killed_root / "runs").iterdir())
    step_at_kill = read_checkpoint(run_dir)["global_step"]
    assert 0 < step_at_kill < 300, "the run must be killed mid-way for this test to mean anything"

    resumed = run_cli(["train", f"resume={run_dir}", "trainer.enable_progress_bar=false"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    straight = run_cli(["train", *tiny(tmp_path / "straight", *run, steps=300)], cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    (straight_dir,) = list((tmp_path / "straight" / "runs").iterdir())

    step_a, a = weights(run_dir)
    step_b, b = weights(straight_dir)
    assert step_a == step_b == 300
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # model, EMA, target: bit for bit
    assert any(k.startswith("target.") for k in a) == (run is KILL_CT)
    assert any(k.startswith("raw.networks.critic.") for k in a) == (run[0] == KILL_ADV[0])
    assert any(k.startswith("raw.networks.fake.") for k in a) == (run[0] == KILL_DMD[0])
    assert any(k.startswith("raw.networks.weight.") for k in a) == (run[0] == KILL_SCT[0])
    assert {k.split(".")[0] for k in a if k.startswith(("opt", "sched"))} == (
        {"opt0", "opt1", "sched0", "sched1"} if run[0] in (KILL_ADV[0], KILL_DMD[0], KILL_SCT[0]) else {"opt0", "sched0"})


def test_an_interrupted_save_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, target)

    def dies_half_way(self, checkpoint, path, storage_options=None):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt  # the process is stopped in the middle of writing

    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io.TorchCheckpointIO.save_checkpoint", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2, "w": torch.zeros(3)}, target)
    assert torch.load(target, weights_only=True)["step"] == 1


@register_method("test_bad_batches")
class BadBatches(CFM):
    """CFM whose loss is NaN on the calls in ``nan_at`` and whose gradient is NaN on those in ``bad_grad_at``."""

    def __init__(self, path, time_sampler, nan_at: str = "", bad_grad_at: str = "") -> None:
        super().__init__(path, time_sampler)
        self.nan_at = {int(c) for c in nan_at.split(",") if c}
        self.bad_grad_at = {int(c) for c in bad_grad_at.split(",") if c}
        self.calls = 0

    def loss(self, model, batch):
        self.calls += 1
        terms = super().loss(model, batch)
        if self.calls in self.nan_at:
            terms["loss"] = terms["loss"] * float("nan")
        if self.calls in self.bad_grad_at:  # finite value, NaN gradient: d sqrt(|u|)/du at 0
            first = next(model.parameters())
            terms["loss"] = terms["loss"] + (first.sum() * 0).abs().sqrt()
        return terms


def test_a_nonfinite_gradient_stops_the_run_naming_the_step(tmp_path):
    cfg = apply_overrides(load_recipe("rectified"), tiny(tmp_path, "method=test_bad_batches", "method.bad_grad_at='8'"))
    with pytest.raises(TrainingError, match=r"a gradient is not finite at step 7; training stopped"):
        train(cfg)


def test_skip_option_drops_bad_batches_counts_them_and_finishes(tmp_path):
    cfg = apply_overrides(load_recipe("rectified"), tiny(
        tmp_path, "method=test_bad_batches", "method.nan_at=5,9", "method.bad_grad_at='14'", "trainer.on_nonfinite=skip",
        "trainer.log_every_n_steps=1", steps=20))
    result = train(cfg)
    assert result.steps == 20 and result.skipped == 3 and result.summary["skipped_batches"] == 3
    ckpt = read_checkpoint(result.run_dir)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert "train/skipped" in (result.run_dir / "logs" / "metrics.csv").read_text()


def test_same_recipe_and_seed_are_bit_identical_on_cpu(tmp_path):
    def run(name, seed):
        result = train(apply_overrides(load_recipe("ot_cfm"), tiny(tmp_path / name, f"seed={seed}", steps=25)))
        return weights(result.run_dir)[1], result.summary["rows"][0]["value"]

    (a, w_a), (b, w_b), (c, _) = run("a", 0), run("b", 0), run("c", 1)
    assert all(torch.equal(a[k], b[k]) for k in a) and w_a == w_b
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_bad_override_on_resume_leaves_the_run_directory_untouched(tmp_path):
    first = train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, steps=5)))
    before = {p: p.stat().st_mtime_ns for p in first.run_dir.rglob("*")}
    proc = run_cli(["train", f"resume={first.run_dir}", "trainer.max_steps=abc"], cwd=tmp_path)
    assert proc.returncode == 2 and "trainer.max_steps must be int" in proc.stderr
    assert {p: p.stat().st_mtime_ns for p in first.run_dir.rglob("*")} == before


KEYS = st.sampled_from(["trainer.max_steps", "optim.lr", "path", "path.sigma_min", "data.batch_size", "seed",
                        "eval.compare", "time.s", "model", "trainer", "nope", "data.path.x", "", "a..b", "recipe"])
VALUES = st.one_of(st.text(max_size=12), st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True).map(str),
                   st.sampled_from(["[1,2", "{a: 1}", "${oops}", "null", "true", "[euler:1]", "'x'", "=", "a=b=c"]))
TOKENS = st.lists(st.one_of(st.builds(lambda k, v: f"{k}={v}", KEYS, VALUES), st.text(max_size=20)), max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(["eval.compare={a: 1}"])  # found by this test: OmegaConf raised a bare TypeError
@example(["optim.lr=${oops}"])  # found by this test: an interpolation traceback
@example(["=\n"])  # found by this test: a newline made a two-line error
@given(TOKENS)
def test_no_override_string_crashes_the_parser(tokens):
    try:
        validate(apply_overrides(load_recipe("rectified"), tokens))
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc).strip()


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    return train(apply_overrides(load_recipe("rectified"), tiny(root, steps=5))).run_dir, root


NUMBERS = st.sampled_from(["0", "1", "-1", "2", "7", "1e-30", "1e-3", "0.5", "nan", "inf", "-inf", "1e30", "10**3",
                           "100000000000", "abc", "[1]", "{a: 1}", "null", "true", "''"])
SPECS = st.sampled_from(["dopri5", "euler:3", "euler:0", "euler:-1", "euler:x", "euler:1000000000", "rk4:2", "dopri5:4",
                         "meanflow:1", "ddim:2", "renoise:2", "bogus", "euler:3,dopri5", ",", "euler:2,,rk4:1"])
VERB_TOKENS = st.lists(st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["n", "rtol", "atol", "seed", "label", "guidance", "repeats",
                                                        "nll_n", "reference_tol", "grid", "device", "ckpt", "nope"]),
              st.one_of(NUMBERS, st.text(max_size=8))),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["solver", "solvers"]), SPECS),
    st.builds(lambda v: f"grid={v}", st.sampled_from(["uniform", "logsnr", "karras", "bogus", "shift"])),
    st.builds(lambda v: f"device={v}", st.sampled_from(["cpu", "cuda", "cuda:7", "tpu", "CPU"])),
    st.builds(lambda v: f"out={v}", st.sampled_from(["x.txt", "/dev/null/x.npy", "", "."])),
    st.text(max_size=12)), max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@example(verb="evaluate", tokens=["out=."])  # found by this test: a traceback from the atomic write after the work
@given(verb=st.sampled_from(["sample", "evaluate", "compare"]), tokens=VERB_TOKENS)
def test_no_argument_crashes_sample_eval_or_compare(sampled_run, verb, tokens):
    """Whatever the arguments, sample / eval / compare either run or stop with one line (ConfigError: exit 2,
    TrainingError: exit 1); no other exception reaches the user."""
    from flowkit.interface import commands

    run_dir, root = sampled_run
    out = {"sample": "s.npy", "evaluate": "e.json", "compare": "c"}[verb]
    base = [f"ckpt={run_dir}", "n=20", "repeats=1", "nll_n=20", "solvers=euler:2,dopri5", f"out={root / out}"]
    base = [t for t in base if t.split("=")[0] in commands_keys(verb)]
    try:
        with contextlib.chdir(root):  # a fuzzed out= (x.txt, 7, inf) is written relative to the working folder
            getattr(commands, verb)(base + tokens)
    except (ConfigError, TrainingError) as exc:
        assert str(exc).strip() and "\n" not in str(exc).strip(), str(exc)


def commands_keys(verb):
    from dataclasses import fields

    from flowkit.interface import commands

    schema = {"sample": commands.SampleArgs, "evaluate": commands.EvalArgs, "compare": commands.CompareArgs}[verb]
    return {f.name for f in fields(schema)}
