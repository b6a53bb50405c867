"""Nothing lost: each test reproduces one reported fault (resume deleting the log, copied runs resuming into
last-v1.ckpt, concurrent writers, signals saving nothing, resume overrides that do not take effect, short
runs saving EMA as raw weights, a full disk) and checks its fix."""

import csv
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
import yaml

from flowkit.runtime.checkpoint import read_checkpoint, write_atomically
from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.errors import ConfigError, TrainingError, WriteError
from flowkit.runtime.rundir import RunLock
from flowkit.training.loop import resolve_config, train
from tests.helpers import flowkit_command, run_cli, tiny


def logged_steps(run_dir):
    with open(run_dir / "logs" / "metrics.csv", newline="") as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]


def first_run(tmp_path, steps=20, *extra):
    return train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, "trainer.log_every_n_steps=5",
                                                                "trainer.checkpoint_every=10", *extra, steps=steps)))


def test_resume_appends_to_the_metrics_log(tmp_path):
    first = first_run(tmp_path)
    assert logged_steps(first.run_dir) == [4, 9, 14, 19]
    cfg, ckpt = resolve_config([f"resume={first.run_dir}", "trainer.max_steps=35"])
    train(cfg, ckpt)
    assert logged_steps(first.run_dir) == [4, 9, 14, 19, 24, 29, 34]  # one row per logged step, none lost


def test_a_resume_from_an_earlier_checkpoint_drops_the_rows_it_trains_again(tmp_path):
    # as if killed at step 20 after a save at 10: the same run's state at step 10 (runs are deterministic)
    killed, at_10 = first_run(tmp_path / "a", 20), first_run(tmp_path / "b", 10)
    shutil.copy(at_10.run_dir / "last.ckpt", killed.run_dir / "last.ckpt")
    cfg, path = resolve_config([f"resume={killed.run_dir}", "trainer.max_steps=25"])
    train(cfg, path)
    assert logged_steps(killed.run_dir) == [4, 9, 14, 19, 24]  # steps 14 and 19 once, from the resumed run


def test_the_last_checkpoint_is_at_the_last_step_with_raw_weights_apart_from_the_ema(tmp_path):
    # 30 steps, checkpoints every 20: the run used to end with last.ckpt at step 20; a run shorter than
    # checkpoint_every saved the EMA weights as its raw weights
    for steps, every in ((30, 20), (12, 50)):
        result = train(apply_overrides(load_recipe("rectified"), tiny(tmp_path / str(every), f"trainer.checkpoint_every={every}",
                                                                      steps=steps)))
        ckpt = read_checkpoint(result.run_dir)
        assert ckpt["global_step"] == steps
        ema, raw = ckpt["state_dict"], ckpt["current_model_state"]
        assert ema.keys() == raw.keys() and not all(torch.equal(ema[k], raw[k]) for k in ema)
        # the model used for the summary is the EMA
        assert all(torch.equal(v, ema[f"model.{k}"]) for k, v in ckpt_model(result.run_dir).items())


def ckpt_model(run_dir):
    from flowkit.config.build import load_run

    _, parts = load_run(run_dir)
    return parts.model.state_dict()


@pytest.mark.parametrize("how", ["copy", "move", "symlink"])
def test_a_copied_moved_or_linked_run_resumes_in_place(tmp_path, how):
    first = first_run(tmp_path)
    place = tmp_path / "elsewhere"
    {"copy": shutil.copytree, "move": shutil.move, "symlink": lambda a, b: os.symlink(a, b)}[how](first.run_dir, place)
    cfg, ckpt = resolve_config([f"resume={place}", "trainer.max_steps=30"])
    second = train(cfg, ckpt)
    assert sorted(p.name for p in place.glob("*.ckpt")) == ["last.ckpt"]
    assert read_checkpoint(place)["global_step"] == 30 and second.steps == 30


def test_a_second_writer_of_a_run_directory_is_refused_naming_the_holder(tmp_path):
    first = first_run(tmp_path)
    with RunLock(first.run_dir):
        proc = run_cli(["train", f"resume={first.run_dir}", "trainer.max_steps=30"], cwd=tmp_path)
    assert proc.returncode == 2
    assert f"run directory '{first.run_dir}' is being written by flowkit train (pid {os.getpid()}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert read_checkpoint(first.run_dir)["global_step"] == 20
    cfg, ckpt = resolve_config([f"resume={first.run_dir}", "trainer.max_steps=30"])  # released: resumes
    assert train(cfg, ckpt).steps == 30


def test_the_lock_survives_the_deletion_of_its_file(tmp_path):
    """rm RUN/.lock while a run trains used to let a second writer in (the lock was on that file's inode)."""
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):
        (run / ".lock").unlink()
        with pytest.raises(ConfigError, match=rf"is being written by pid {os.getpid()}"):  # read from /proc/locks
            with RunLock(run):
                pass
    with RunLock(run):  # released: taken again
        pass


def test_a_forked_child_does_not_keep_the_lock_of_a_writer_that_ended(tmp_path):
    """Loader processes are forked while the run holds its lock; a writer killed with kill -9 leaves them alive for a
    moment, and they must not hold its lock meanwhile (resume after kill -9 was refused)."""
    import time

    run = tmp_path / "run"
    run.mkdir()
    lock = RunLock(run).__enter__()
    ready, say = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(say, b"1")  # the fork's hooks have run
        time.sleep(30)
        os._exit(0)
    os.read(ready, 1)
    try:
        lock.__exit__(None, None, None)
        with RunLock(run):
            pass
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)


def test_concurrent_saves_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "last.ckpt"
    seen = []

    def nested(p):  # a second writer saves while the first is half-way
        seen.append(p)
        if len(seen) == 1:
            write_atomically(target, nested)
        torch.save({"n": len(seen)}, p)

    write_atomically(target, nested)
    assert len(set(seen)) == 2 and not list(tmp_path.glob(".*tmp*"))
    assert torch.load(target, weights_only=True)["n"] in (1, 2)


def test_a_full_disk_is_one_line_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "last.ckpt"
    torch.save({"step": 1}, target)

    def full(p):
        p.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(WriteError, match=r"cannot write '.*last.ckpt': No space left on device; the previous file is kept"):
        write_atomically(target, full)
    assert torch.load(target, weights_only=True)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_full_disk_during_training_stops_with_one_line(tmp_path, monkeypatch):
    def full(self, checkpoint, path, storage_options=None):
        open(path, "wb").write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io.TorchCheckpointIO.save_checkpoint", full)
    with pytest.raises(TrainingError, match=r"cannot write .*last.ckpt.: No space left on device; nothing was written"):
        first_run(tmp_path)
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert not list(run_dir.glob(".*tmp*"))


def test_a_full_disk_names_the_step_the_kept_checkpoint_holds(tmp_path, monkeypatch):
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    save, calls = TorchCheckpointIO.save_checkpoint, []

    def full_after_the_first(self, checkpoint, path, storage_options=None):
        calls.append(checkpoint["global_step"])
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", full_after_the_first)
    with pytest.raises(TrainingError) as error:
        first_run(tmp_path)  # saves at step 10, then fails at step 20
    assert calls[:2] == [10, 20]
    assert re.search(r"the previous file is kept; training stopped\. Last good checkpoint: .*last\.ckpt \(step 10\)",
                     str(error.value)), str(error.value)


def test_a_temporary_file_left_by_a_kill_is_removed_by_the_next_writer(tmp_path):
    first = first_run(tmp_path)
    stale = first.run_dir / ".last.ckpt.tmp-123-abcd.ckpt"
    stale.write_bytes(b"half a checkpoint")
    cfg, ckpt = resolve_config([f"resume={first.run_dir}", "trainer.max_steps=25"])
    train(cfg, ckpt)
    assert not stale.exists()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_saves_says_how_to_resume_and_exits_with_the_shell_code(tmp_path, sig, code):
    root = tmp_path / "runs"
    proc = subprocess.Popen(flowkit_command() + ["train", *tiny(tmp_path, "trainer.checkpoint_every=100000",
                                                                "trainer.log_every_n_steps=5", steps=100000)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(root.glob("*/logs/metrics.csv")):  # training is under way
        time.sleep(0.05)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    (run_dir,) = list(root.iterdir())
    step = read_checkpoint(run_dir)["global_step"]
    assert proc.returncode == code
    assert 0 < step < 100000
    assert f"at step {step}" in stderr and f"resume with: flowkit train resume={run_dir}" in stderr
    assert "Traceback" not in stderr
    resumed = run_cli(["train", f"resume={run_dir}", f"trainer.max_steps={step + 5}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert read_checkpoint(run_dir)["global_step"] == step + 5


@pytest.mark.parametrize("delay", [0.2, 0.6, 1.2])
def test_ctrl_c_while_flowkit_starts_is_one_line_and_exit_130(tmp_path, delay):
    """Ctrl-C in the first seconds (while modules import) printed a 110-line RuntimeError from __set_name__."""
    proc = subprocess.Popen(flowkit_command() + ["train", *tiny(tmp_path, steps=100000)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_ctrl_c_during_the_final_evaluation_keeps_the_run_and_says_how_to_evaluate_it(tmp_path):
    root = tmp_path / "runs"
    proc = subprocess.Popen(flowkit_command() + ["train", *tiny(tmp_path, "eval.n=20000", "eval.solver=dopri5",
                                                                "eval.rtol=1e-9", "eval.atol=1e-9", steps=5)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(root.glob("*/last.ckpt")):  # trained: the evaluation runs now
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    (run_dir,) = list(root.iterdir())
    assert proc.returncode == 130, stderr
    assert f"flowkit eval ckpt={run_dir}" in stderr and "Traceback" not in stderr, stderr
    assert read_checkpoint(run_dir)["global_step"] == 5


def test_resume_refuses_an_override_it_cannot_honour(tmp_path):
    first = first_run(tmp_path)
    with pytest.raises(ConfigError, match=r"optim.lr cannot change when resuming \(the run has 0.001, asked 0.1\).*"
                                          r"Keys that may change: .*trainer.max_steps"):
        resolve_config([f"resume={first.run_dir}", "optim.lr=0.1"])
    with pytest.raises(ConfigError, match="model.width cannot change"):
        resolve_config([f"resume={first.run_dir}", "model.width=32"])
    cfg, _ = resolve_config([f"resume={first.run_dir}", "trainer.max_steps=50", "eval.n=300"])  # these may
    assert cfg.trainer.max_steps == 50 and cfg.eval.n == 300


@pytest.mark.parametrize("name", ["../../escaped", "/abs/path", "a/b", ".hidden", "x" * 101, ""])
def test_run_names_are_plain_names(tmp_path, name):
    with pytest.raises(ConfigError, match="a plain name"):
        train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, f"name='{name}'")))
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "escaped").exists()


def test_a_checkpoint_with_nonfinite_weights_is_refused_by_sample_and_resume(tmp_path):
    first = first_run(tmp_path)
    ckpt = torch.load(first.run_dir / "last.ckpt", weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    ckpt["state_dict"][key] = ckpt["state_dict"][key] * float("nan")
    torch.save(ckpt, first.run_dir / "last.ckpt")
    out = tmp_path / "x.npy"
    for args in (["sample", f"ckpt={first.run_dir}", f"out={out}", "n=10"], ["train", f"resume={first.run_dir}"]):
        proc = run_cli(args, cwd=tmp_path)
        assert proc.returncode == 2 and "holds non-finite weights (state_dict: " in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("array, message", [
    (np.array([[1 + 2j, 0], [3, 4]]), "holds complex128 values; expected real numbers"),
    (np.array([[True, False], [False, True]]), "holds bool values; expected real numbers"),
    (np.ones((50, 2)), "all 50 samples are the same point"),
    (np.ones((1, 2)), "all 1 samples are the same point"),
], ids=["complex", "bool", "constant", "one-row"])
def test_user_arrays_that_are_not_a_real_distribution_are_refused(tmp_path, array, message):
    path = tmp_path / "x.npy"
    np.save(path, array)
    with pytest.raises(ConfigError, match=message):
        train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, f"data.path={path}")))
    assert not (tmp_path / "runs").exists()


def test_an_empty_data_path_is_refused_not_replaced_by_the_target(tmp_path):
    with pytest.raises(ConfigError, match=r"'data.path=' has no value; give one, or write data.path=null to unset it"):
        apply_overrides(load_recipe("rectified"), ["data.path="])
    with pytest.raises(ConfigError, match="data.path is empty"):
        train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, "data.path=' '")))


@pytest.mark.parametrize("override, message", [
    ("seed=-1", r"seed=-1 is out of range; expected in \[0, 2\^32\)"),
    ("seed=4294967296", "seed=4294967296 is out of range"),
    ("trainer.devices=0", "trainer.devices='0' is out of range; expected auto, a number of devices >= 1"),
    ("trainer.precision=64-true", "trainer.precision='64-true' is out of range; expected one of: 32-true"),
    ("trainer.accelerator=tpu2", "trainer.accelerator='tpu2' is out of range; expected one of: auto, cpu"),
    ("trainer.num_nodes=2", "trainer.num_nodes=2 needs a multi-node launcher"),
] + ([] if torch.cuda.is_available() else [("device=cuda", "this machine has no CUDA GPU"),
                                            ("trainer.accelerator=gpu", "this machine has no CUDA GPU")]))
def test_settings_the_machine_cannot_run_are_one_line_before_anything_is_written(tmp_path, override, message):
    with pytest.raises(ConfigError) as error:
        cfg, _ = resolve_config(tiny(tmp_path, override))
        train(cfg)
    assert re.search(message, str(error.value)) and "\n" not in str(error.value)
    assert not (tmp_path / "runs").exists()


def test_a_setting_refused_before_training_exits_2_from_the_command_line(tmp_path):
    proc = run_cli(["train", *tiny(tmp_path, "trainer.num_nodes=2")], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "needs a multi-node launcher" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_without_a_terminal_training_prints_progress_lines_and_where_a_resume_starts(tmp_path):
    first = run_cli(["train", *tiny(tmp_path, "trainer.enable_progress_bar=true", "trainer.checkpoint_every=10",
                                    steps=20)], cwd=tmp_path)  # stderr is a pipe, as under nohup or CI
    assert first.returncode == 0, first.stderr
    assert "step 20/20 (100%), loss " in first.stderr and "Epoch" not in first.stderr
    (run_dir,) = list((tmp_path / "runs").iterdir())
    resumed = run_cli(["train", f"resume={run_dir}", "trainer.max_steps=30"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed at step 20 of 30" in resumed.stderr and "step 30/30 (100%)" in resumed.stderr


def test_the_final_evaluation_says_its_planned_cost_and_its_progress_without_a_terminal(tmp_path):
    """Twelve silent minutes of final evaluation could not be told from a hang (issue: evaluation that says what
    it is doing): the plan first (NFE x samples for each sampler, a time estimate), then each sampler's progress."""
    proc = run_cli(["train", *tiny(tmp_path, "eval.solver=euler:4", "eval.compare=[rk4:2,dopri5]", "eval.n=300",
                                   "eval.repeats=2", steps=20)], cwd=tmp_path)  # stderr is a pipe
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    (plan,) = [line for line in lines if line.startswith("final evaluation:")]
    assert ("W2 over 2 draws of 300 against its floor; 600 samples each with euler:4 (at most 4 NFE), rk4:2 (at "
            "most 8 NFE), dopri5 (adaptive: NFE not known in advance): 7,200 sample-evaluations (NFE x samples) "
            "planned, about ") in plan and plan.endswith(" s at the training's pace")
    assert any(line.startswith("evaluating W2 with euler:4: 4/4 NFE (100%)") for line in lines), lines
    assert any(line.startswith("evaluating W2 with rk4:2: 8/8 NFE (100%)") for line in lines), lines
    assert any(line.startswith("evaluating W2 with dopri5: ") and "NFE," in line for line in lines), lines
    assert lines.index(plan) < min(i for i, line in enumerate(lines) if line.startswith("evaluating"))


def test_progress_lines_come_at_the_interval_asked():
    import io
    from types import SimpleNamespace

    from flowkit.runtime.progress import ProgressLines

    stream = io.StringIO()
    trainer = SimpleNamespace(global_step=0, max_steps=10, is_global_zero=True)
    every_step, never = ProgressLines(every_s=0.0, stream=stream), ProgressLines(every_s=1e9, stream=io.StringIO())
    for lines in (every_step, never):
        lines.on_train_start(trainer, None)
    for step in range(1, 4):
        trainer.global_step = step
        for lines in (every_step, never):
            lines.on_train_batch_end(trainer, None, {"loss": torch.tensor(0.5)}, None, 0)
    assert [line.split(",")[0] for line in stream.getvalue().splitlines()] == [f"step {k}/10 (" + f"{10 * k}%)" for k in (1, 2, 3)]
    assert "loss 0.5" in stream.getvalue() and never.stream.getvalue() == ""


def test_an_output_that_cannot_be_written_is_one_line(tmp_path):
    first = first_run(tmp_path, 5)
    (tmp_path / "afile").write_text("x")
    proc = run_cli(["sample", f"ckpt={first.run_dir}", f"out={tmp_path / 'afile' / 'x.npy'}", "n=10"], cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "its folder" in proc.stderr and "a file is in the way" in proc.stderr


@pytest.mark.parametrize("verb, token, message", [
    ("evaluate", "repeats=0", "repeats=0 is out of range; expected >= 1"),
    ("evaluate", "nll_n=0", "nll_n=0 is out of range; expected >= 2"),
    ("sample", "rtol=nan", "rtol=nan is out of range; expected > 0"),
    ("sample", "atol=0", "atol=0.0 is out of range; expected > 0"),
    ("compare", "reference_tol=-1", "reference_tol=-1.0 is out of range"),
    ("sample", "seed=-1", "seed=-1 is out of range; expected in [0, 2^32)"),
])
def test_sampling_verbs_refuse_out_of_range_numbers_before_loading(tmp_path, verb, token, message):
    from flowkit.interface import commands

    with pytest.raises(ConfigError, match=re.escape(message)):
        getattr(commands, verb)([f"ckpt={tmp_path}", token])  # refused before the (missing) checkpoint is read


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("short")
    return train(apply_overrides(load_recipe("rectified"), tiny(root, steps=5))).run_dir


def first_weight(ckpt, section="state_dict"):
    return next(iter(ckpt[section]))


HOSTILE = {  # what a hostile or broken checkpoint holds -> what the one line says
    "wrong-shape": (lambda c: c["state_dict"].__setitem__(first_weight(c), torch.zeros(3, 3, 3)), "has shape (3, 3, 3)"),
    "wrong-shape-raw": (lambda c: c["current_model_state"].__setitem__(first_weight(c, "current_model_state"),
                                                                       torch.zeros(3)), "its current_model_state does not fit"),
    "missing-weight": (lambda c: c["state_dict"].pop(first_weight(c)), "missing ['model."),
    "integer-weights": (lambda c: c["state_dict"].__setitem__(first_weight(c), c["state_dict"][first_weight(c)].long()),
                        "holds int64, the network's float32"),
    "empty-flowkit": (lambda c: c.__setitem__("flowkit", {}), "its 'flowkit' section has no config"),
    "flowkit-string": (lambda c: c.__setitem__("flowkit", "x"), "its 'flowkit' section is a str"),
    "config-string": (lambda c: c["flowkit"].__setitem__("config", "a string"), "its flowkit.config is a str"),
    "weights-list": (lambda c: c.__setitem__("state_dict", [1, 2]), "its state_dict is not a mapping of names to tensors"),
    "step-string": (lambda c: c.__setitem__("global_step", "x"), "its global_step 'x' is not a step"),
    "no-optimizer": (lambda c: c.pop("optimizer_states"), "its optimizer_states holds nothing, expected 1"),
    "empty-optimizer": (lambda c: c.__setitem__("optimizer_states", []), "its optimizer_states holds 0 entries"),
}
RESUME_ONLY = {"wrong-shape-raw", "no-optimizer", "empty-optimizer"}  # sampling reads the EMA weights alone


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_broken_checkpoint_is_one_line_for_sample_and_resume(short_run, tmp_path, case):
    from flowkit.interface import commands

    mutate, message = HOSTILE[case]
    run_dir = tmp_path / "run"
    shutil.copytree(short_run, run_dir)
    ckpt = torch.load(run_dir / "last.ckpt", weights_only=False)
    mutate(ckpt)
    torch.save(ckpt, run_dir / "last.ckpt")
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    with pytest.raises(ConfigError, match=re.escape(message)):
        cfg, resume = resolve_config([f"resume={run_dir}", "trainer.max_steps=8"])
        train(cfg, resume)
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before  # refused before anything is written
    if case in RESUME_ONLY:
        return
    with pytest.raises(ConfigError, match=re.escape(message.replace("['model.", "['"))):  # sampling names the network's keys
        commands.sample([f"ckpt={run_dir}", "n=10", f"out={tmp_path / 's.npy'}"])


def test_a_hostile_checkpoint_from_the_command_line_exits_2_without_a_traceback(short_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(short_run, run_dir)
    ckpt = torch.load(run_dir / "last.ckpt", weights_only=False)
    ckpt["flowkit"] = {}
    torch.save(ckpt, run_dir / "last.ckpt")
    for args in (["sample", f"ckpt={run_dir}", "n=10"], ["train", f"resume={run_dir}"]):
        proc = run_cli(args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and "has no config" in proc.stderr, proc.stderr


@pytest.mark.parametrize("array, message", [
    (np.array([["a", "b"], ["c", "d"]]), "holds <U1 values (not numbers)"),
    (np.zeros(5, dtype=[("x", "f4"), ("y", "f4")]), "(records); expected real numbers"),
], ids=["strings", "records"])
def test_arrays_of_strings_or_records_are_refused_before_training(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(ConfigError, match=re.escape(message)):
        train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, f"data.path={tmp_path / 'x.npy'}")))
    assert not (tmp_path / "runs").exists()


def test_a_header_claiming_more_than_the_file_holds_is_refused_without_allocating(tmp_path):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 2)})
    with pytest.raises(ConfigError, match="shorter than its header claims"):
        train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, f"data.path={path}")))


def test_data_without_a_natural_picture_trains_and_draws_no_figure(tmp_path):
    from flowkit.metrics.plots import save_samples

    save_samples(tmp_path / "a.png", torch.randn(10, 2, 3, 4))  # two channels: not an image
    save_samples(tmp_path / "b.png", torch.randn(16, 1, 4, 4))
    assert not (tmp_path / "a.png").exists() and (tmp_path / "b.png").exists()


@pytest.mark.parametrize("override", ["cond.labels=2", "trainer.enable_progress_bar=2", "cond.labels=0"])
def test_a_switch_takes_true_or_false_only(override):
    with pytest.raises(ConfigError, match="must be true or false"):
        apply_overrides(load_recipe("rectified"), [override])


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=1000000000", "data.batch_size=1000000000 needs about"),
    ("model.width=1000000000", r"the model \(model.width, model.depth, ...\) needs about .* parameters"),
])
def test_sizes_the_machine_cannot_hold_are_one_line_before_anything_is_allocated(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, override)))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("token, message", [
    ("n=100000000000", "n=100000000000 needs about"),
    ("solver=euler:1000000000", r"needs a step count in \[1, 1,000,000\]"),
])
def test_draws_the_machine_cannot_make_are_one_line(short_run, tmp_path, token, message):
    from flowkit.interface import commands

    with pytest.raises(ConfigError, match=message):
        commands.sample([f"ckpt={short_run}", token, f"out={tmp_path / 's.npy'}"])


@pytest.mark.parametrize("tokens, message", [
    (["n=1000000000", "repeats=3"], r"n=1000000000 with repeats=3 needs about"),  # was reported as n=3000000000
    (["n=10", "repeats=1", "nll_n=1000000000"], r"nll_n=1000000000 needs about"),
])
def test_an_evaluation_too_large_names_the_values_as_typed(short_run, tokens, message):
    from flowkit.interface import commands

    with pytest.raises(ConfigError, match=message):
        commands.evaluate([f"ckpt={short_run}", *tokens])


@pytest.mark.parametrize("verb", ["sample", "invert", "compare"])
def test_an_output_name_too_long_is_exit_2_before_any_work(short_run, tmp_path, verb):
    """out= of 5,000 characters with a valid run was exit 1, after sampling ('cannot write ...')."""
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((4, 2), np.float32))
    extra = {"sample": ["n=5"], "invert": [f"in={tmp_path / 'x.npy'}"], "compare": ["solvers=euler:2", "n=20"]}[verb]
    proc = run_cli([verb, f"ckpt={short_run}", *extra, "out=" + "x" * 5000 + ".npy"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-300:]
    assert "file name too long" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[:300]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_an_allocation_that_fails_anyway_is_one_line_naming_the_setting():
    from flowkit.runtime.memory import ReportOutOfMemory

    with pytest.raises(TrainingError, match=r"out of memory \(.*can't allocate memory.*\); lower data.batch_size"):
        with ReportOutOfMemory("data.batch_size"):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")
    with pytest.raises(ValueError):  # anything else passes through unchanged
        with ReportOutOfMemory("n"):
            raise ValueError("x")


def test_the_ema_warms_up_from_the_first_steps():
    from flowkit.training.ema import EMA

    ema = EMA(0.999)
    assert ema.decay_at(2) == 0.25 and ema.decay_at(80) == 0.9 and ema.decay_at(10_000) == 0.999
    assert EMA(0.999, warmup=False).decay_at(2) == 0.999
    assert "warmed up (decay 0.971 at the end" in ema.short_run_note(300) and ema.short_run_note(1000) is None
    assert "74% of the EMA is still the initial weights" in EMA(0.999, warmup=False).short_run_note(300)


def test_a_short_run_samples_from_trained_weights_and_says_its_ema_is_short(tmp_path):
    runs = {warmup: train(apply_overrides(load_recipe("rectified"), tiny(
        tmp_path, f"optim.ema_warmup={warmup}", "eval.repeats=2", "model.width=128", f"name=w{warmup}", steps=300)))
        for warmup in ("true", "false")}
    w2 = {warmup: run.summary["rows"][0]["value"] for warmup, run in runs.items()}
    assert w2["true"] < 0.6 * w2["false"], w2  # without it, 74% of the EMA is the initial network
    assert "the EMA warmed up" in runs["true"].notes[0] and runs["true"].summary["notes"] == runs["true"].notes
    assert "mostly untrained network" in runs["false"].notes[0]


def test_a_run_on_a_relative_data_path_is_read_from_anywhere_and_outlives_its_file(tmp_path):
    """data.path is recorded absolute (eval from another folder said "no such file"); sampling needs no data."""
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    np.save(here / "mine.npy", np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32))
    proc = run_cli(["train", "data.path=mine.npy", *tiny(here, steps=10)], cwd=here)
    assert proc.returncode == 0, proc.stderr
    (run,) = (here / "runs").iterdir()
    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]["path"]
    assert saved == str(here / "mine.npy")
    assert run_cli(["eval", f"ckpt={run}", "n=50", "repeats=1", "nll_n=10"], cwd=there).returncode == 0
    (here / "mine.npy").unlink()
    for args in (["sample", "n=20", "out=s.npy", "solver=euler:2"], ["invert", "in=s.npy", "out=z.npy"]):
        proc = run_cli([args[0], f"ckpt={run}", *args[1:]], cwd=there)
        assert proc.returncode == 0, proc.stderr
    proc = run_cli(["eval", f"ckpt={run}", "n=50", "repeats=1"], cwd=there)
    assert proc.returncode == 2 and "no such file" in proc.stderr and "sampling, inverting and comparing" in proc.stderr
    # compare needs no data: NFE and the distance to dopri5 are measured, the metric is said to be missing
    proc = run_cli(["compare", f"ckpt={run}", "solvers=euler:2,heun:2", "n=50", f"out={there / 'c'}"], cwd=there)
    assert proc.returncode == 0, proc.stderr
    assert "no metric" in proc.stdout and "no such file" in proc.stdout
    rows = json.loads((there / "c.json").read_text())["rows"]
    assert [r["nfe"] for r in rows] == [2, 4] and all(r["value"] is None and r["error"] > 0 for r in rows)
    assert (there / "c.png").stat().st_size > 0


def test_a_data_file_replaced_by_another_of_the_same_shape_is_refused_on_resume(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "mine.npy", rng.normal(size=(400, 2)).astype(np.float32))
    proc = run_cli(["train", "data.path=mine.npy", *tiny(tmp_path, steps=10)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run,) = (tmp_path / "runs").iterdir()
    np.save(tmp_path / "mine.npy", rng.normal(size=(400, 2)).astype(np.float32))  # same shape, other points
    proc = run_cli(["train", f"resume={run}", "trainer.max_steps=20"], cwd=tmp_path)
    assert proc.returncode == 2 and "changed since the run was trained" in proc.stderr, proc.stderr
    assert read_checkpoint(run)["global_step"] == 10


def test_resume_with_a_recipe_is_refused_not_ignored(tmp_path):
    first = first_run(tmp_path)
    proc = run_cli(["train", f"resume={first.run_dir}", "recipe=ot_cfm", "trainer.max_steps=30"], cwd=tmp_path)
    assert proc.returncode == 2 and "recipe=ot_cfm" in proc.stderr and "resume=" in proc.stderr


def test_a_short_image_runs_evaluation_is_sized_to_its_training_and_says_so(tmp_path):
    """An image run with no eval.* set evaluated with the 2-D defaults (dopri5 on 5 x 2,000 samples): 12 silent
    minutes after 20 training steps. Now a fixed-step sampler on samples whose network evaluations (NFE x samples,
    counted in advance) stay within the training's own (steps x batch x 3), shown as it runs."""
    steps, batch = 40, 32
    proc = run_cli(["train", "recipe=rectified", "data.target=digits", "model=unet", "model.channels=8",
                    f"data.batch_size={batch}", f"trainer.max_steps={steps}", f"run_root={tmp_path / 'runs'}",
                    "trainer.enable_progress_bar=false"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = list((tmp_path / "runs").iterdir())
    e = yaml.safe_load((run_dir / "config.yaml").read_text())["eval"]
    assert (e["solver"], e["compare"], e["repeats"]) == ("euler:32", [], 1)
    assert 32 * e["n"] * e["repeats"] <= steps * batch * 3 and e["n"] == steps * batch * 3 // 32
    summary = json.loads((run_dir / "summary.json").read_text())
    assert any(note.startswith("evaluation chosen (for this data, n sized to the training's 3,840 network "
                               "evaluations of a sample): solver=euler:32, compare=[], n=120, repeats=1")
               for note in summary["notes"]), summary["notes"]
    assert "evaluating FD with euler:32: 32/32 NFE (100%)" in proc.stderr
    given = run_cli(["train", "recipe=rectified", "data.target=digits", "model=unet", "model.channels=8",
                     "trainer.max_steps=2", f"run_root={tmp_path / 'given'}", "eval.n=50", "eval.solver=euler:2",
                     "trainer.enable_progress_bar=false"], cwd=tmp_path)
    assert given.returncode == 0, given.stderr
    (given_dir,) = list((tmp_path / "given").iterdir())
    e = yaml.safe_load((given_dir / "config.yaml").read_text())["eval"]
    assert (e["solver"], e["n"], e["compare"], e["repeats"]) == ("euler:2", 50, [], 1)  # eval.* wins, the rest chosen
