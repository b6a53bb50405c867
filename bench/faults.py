"""The README's fault table: each attack class re-run as trials through the `flowkit` command, as a user or an
attacker would meet it, and the outcomes counted.

- hostile files: checkpoints whose pickle calls code (os.system, eval, print, ... at any depth, protocols 0-5),
  through every command that reads one (sample, eval, compare, resume=, method.teacher=, model.init_from=), and
  broken checkpoints and data files (wrong shapes, missing sections, strings, records, a header claiming 8 TB):
  each must exit 2 with one line, run no code and write nothing.
- kill -9 at random moments, then resume=: the run must end bitwise equal to an uninterrupted one.
- SIGINT / SIGTERM: a saved checkpoint, "resume with: ..." and exit 130 / 143; the resume continues it.
- disk full (a file-size limit, RLIMIT_FSIZE, so that writes fail with EFBIG as on a full disk): one line, exit 1,
  no temporary file left, the previous checkpoint kept.
- concurrent resumes of one run: one refused naming the holder, the other finishes.
- fuzz: random override strings for train and random arguments for sample / eval / compare: no traceback.
- the newer surfaces (`faults_surfaces.py`): hostile image folders and archives, image modes read faithfully,
  sampler options and numbers, markup and long names, Ctrl-C at any moment, Weights & Biases failures, a deleted
  lock file, runs whose data is gone, bad values through the Python API.

    python bench/faults.py [--kills 5] [--signals 4] [--concurrent 3] [--fuzz 200] [--interrupts 6]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import random
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import report
from fault_tools import TINY, cli, command, one_line, started, train_run
from faults_surfaces import surfaces

class Payload:
    """A pickle that calls ``fn(*args)`` when loaded."""

    def __init__(self, fn, args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def malicious_checkpoints(folder: Path, canary: Path) -> list[Path]:
    calls = [(os.system, (f"touch {canary}",)), (eval, (f"open({str(canary)!r}, 'w')",)),
             (exec, (f"open({str(canary)!r}, 'w')",)), (subprocess.call, (["touch", str(canary)],)),
             (print, ("pwned",)), (shutil.copy, ("/etc/hostname", str(canary)))]
    files = []
    for i, (fn, args) in enumerate(calls):
        for protocol in (0, 2, 5):
            for where in ("top", "state_dict", "config"):
                payload = Payload(fn, args)
                obj = {"top": payload, "state_dict": {"state_dict": {"w": payload}, "flowkit": {}},
                       "config": {"state_dict": {}, "flowkit": {"config": {"name": payload}}}}[where]
                path = folder / f"evil-{i}-{protocol}-{where}.ckpt"
                with open(path, "wb") as f:
                    pickle.dump(obj, f, protocol=protocol)
                files.append(path)
    return files


def broken_checkpoints(run: Path, folder: Path) -> list[Path]:
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    first = next(iter(ckpt["state_dict"]))
    mutations = {
        "wrong-shape": lambda c: c["state_dict"].__setitem__(first, torch.zeros(3, 3, 3)),
        "missing-weight": lambda c: c["state_dict"].pop(first),
        "integer-weights": lambda c: c["state_dict"].__setitem__(first, c["state_dict"][first].long()),
        "nan-weights": lambda c: c["state_dict"].__setitem__(first, c["state_dict"][first] * float("nan")),
        "empty-flowkit": lambda c: c.__setitem__("flowkit", {}),
        "flowkit-string": lambda c: c.__setitem__("flowkit", "x"),
        "config-string": lambda c: c["flowkit"].__setitem__("config", "x"),
        "weights-list": lambda c: c.__setitem__("state_dict", [1, 2]),
        "step-string": lambda c: c.__setitem__("global_step", "x"),
        "no-optimizer": lambda c: c.pop("optimizer_states"),
        "not-a-dict": lambda c: c.clear(),
    }
    files = []
    for name, mutate in mutations.items():
        c = torch.load(run / "last.ckpt", weights_only=True)
        mutate(c)
        folder.joinpath(name).mkdir()
        torch.save(c if c else [1, 2, 3], folder / name / "last.ckpt")
        files.append(folder / name)
    (folder / "truncated").mkdir()
    (folder / "truncated" / "last.ckpt").write_bytes((run / "last.ckpt").read_bytes()[:5000])
    return files + [folder / "truncated"]


def bad_arrays(folder: Path) -> list[Path]:
    arrays = {"strings": np.array([["a", "b"], ["c", "d"]]), "records": np.zeros(5, dtype=[("x", "f4"), ("y", "f4")]),
              "complex": np.ones((10, 2)) * 1j, "bool": np.ones((10, 2), bool), "constant": np.ones((50, 2)),
              "one-row": np.ones((1, 2)), "nan": np.full((10, 2), np.nan), "scalar": np.array(3.0)}
    files = []
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
        files.append(folder / f"{name}.npy")
    with open(folder / "huge-header.npy", "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 2)})
    np.save(folder / "objects.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    (folder / "text.npy").write_text("not an array")
    return files + [folder / "huge-header.npy", folder / "objects.npy", folder / "text.npy"]


def hostile_files(work: Path, run: Path) -> list[dict]:
    canary = work / "CANARY"
    evil = work / "evil"
    evil.mkdir()
    pickles = malicious_checkpoints(evil, canary)
    entries = [lambda p: ("sample", f"ckpt={p}", f"out={work / 'x.npy'}", "n=10"),
               lambda p: ("eval", f"ckpt={p}", "n=10"),
               lambda p: ("compare", f"ckpt={p}", f"out={work / 'c'}"),
               lambda p: ("train", f"resume={p}"),
               lambda p: ("train", "recipe=cd", f"method.teacher={p}", f"run_root={work / 'never'}"),
               lambda p: ("train", f"model.init_from={p}", f"run_root={work / 'never'}"),
               lambda p: ("train", f"data.path={p.with_suffix('.pt')}", f"run_root={work / 'never'}")]
    rows = []
    trials = ok = 0
    for path in pickles:
        shutil.copy(path, path.with_suffix(".pt"))
    for i, path in enumerate(pickles):  # every pickle through one entry point in turn, each entry point 18 times
        proc = cli(*entries[i % len(entries)](path), cwd=work)
        trials += 1
        ok += one_line(proc, 2) and "refused" in proc.stderr and "pwned" not in proc.stdout and not canary.exists()
    rows.append({"attack": "checkpoints and .pt files whose pickle calls code (6 calls x 3 protocols x 3 depths, "
                 "through sample, eval, compare, resume, method.teacher, model.init_from, data.path)",
                 "trials": trials, "held": ok, "outcome": "exit 2, one line, no code run, nothing written"})
    broken = work / "broken"
    broken.mkdir()
    trials = ok = 0
    for folder in broken_checkpoints(run, broken):
        sampling = () if folder.name == "no-optimizer" else (("sample", f"ckpt={folder}", f"out={work / 'x.npy'}", "n=10"),)
        for args in (*sampling, ("train", f"resume={folder}")):  # sampling needs no optimizer state
            before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
            proc = cli(*args, cwd=work)
            trials += 1
            ok += one_line(proc, 2) and before == {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    rows.append({"attack": "broken checkpoints (wrong shapes, integer or NaN weights, missing sections, strings for "
                 "mappings, no optimizer state, truncated), through sample and resume", "trials": trials, "held": ok,
                 "outcome": "exit 2, one line, the run directory untouched"})
    arrays = work / "arrays"
    arrays.mkdir()
    trials = ok = 0
    for path in bad_arrays(arrays):
        proc = cli("train", f"data.path={path}", f"run_root={work / 'never'}", *TINY, cwd=work)
        trials += 1
        ok += one_line(proc, 2) and not (work / "never").exists()
    rows.append({"attack": "bad data files (strings, records, objects, complex, bool, NaN, constant, one row, a "
                 "scalar, text, a header claiming 8 TB)", "trials": trials, "held": ok,
                 "outcome": "exit 2, one line, before any run directory"})
    return rows


KILL_RUN = ["trainer.max_steps=600", "trainer.checkpoint_every=50", "coupling=ot", "optim.warmup_steps=20"]


def weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(run / "last.ckpt", weights_only=True)
    moments = {f"opt{i}.{p}.{k}": v for i, o in enumerate(ckpt["optimizer_states"]) for p, s in o["state"].items()
               for k, v in s.items()}
    return {"step": torch.tensor(ckpt["global_step"]), **ckpt["state_dict"], **moments,
            **{f"raw.{k}": v for k, v in ckpt["current_model_state"].items()}}


def kills(work: Path, trials: int, rng: random.Random) -> dict:
    straight = weights(train_run(work / "straight", *KILL_RUN[1:], steps=600))
    ok = 0
    for trial in range(trials):
        root = work / f"killed-{trial}"
        proc = started("train", f"run_root={root}", *TINY, *KILL_RUN, cwd=work, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, ready=lambda: bool(list(root.glob("*/last.ckpt"))))
        time.sleep(rng.uniform(0, 3))  # anywhere after the first save: between saves or inside one
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        run = next(root.iterdir())
        resumed = cli("train", f"resume={run}", cwd=work)
        got = weights(run) if resumed.returncode == 0 else {}
        ok += got.keys() == straight.keys() and all(torch.equal(got[k], straight[k]) for k in got)
    return {"attack": "kill -9 at a random moment of a 600-step OT-CFM run (saves included), then resume=",
            "trials": trials, "held": ok, "outcome": "bitwise equal to the uninterrupted run (weights, EMA, Adam moments)"}


def signals(work: Path, trials: int) -> dict:
    ok = 0
    for trial in range(trials):
        sig, code = [(signal.SIGINT, 130), (signal.SIGTERM, 143)][trial % 2]
        root = work / f"signal-{trial}"
        proc = started("train", f"run_root={root}", *TINY, "trainer.max_steps=100000", "trainer.checkpoint_every=100000",
                       "trainer.log_every_n_steps=5", cwd=work, ready=lambda: bool(list(root.glob("*/logs/metrics.csv"))))
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
        run = next(root.iterdir())
        step = torch.load(run / "last.ckpt", weights_only=True)["global_step"] if (run / "last.ckpt").exists() else -1
        resumed = cli("train", f"resume={run}", f"trainer.max_steps={step + 5}", cwd=work)
        ok += (proc.returncode == code and f"at step {step}" in stderr and "resume with: flowkit train resume=" in stderr
               and "Traceback" not in stderr and resumed.returncode == 0)
    return {"attack": "SIGINT / SIGTERM during training (no periodic checkpoint due)", "trials": trials, "held": ok,
            "outcome": "checkpoint saved, 'resume with: ...', exit 130 / 143; the resume continues it"}


def disk_full(work: Path, run: Path) -> dict:
    size = (run / "last.ckpt").stat().st_size
    ok = trials = 0
    for fraction in (0.02, 0.3, 0.6, 0.9):
        root = work / f"full-{fraction}"
        copy = root / run.name
        shutil.copytree(run, copy)
        before = (copy / "last.ckpt").read_bytes()
        proc = cli("train", f"resume={copy}", "trainer.max_steps=40", limit_bytes=int(fraction * size), cwd=work)
        leftovers = [p.name for p in copy.rglob(".*tmp*")]
        trials += 1
        ok += (proc.returncode == 1 and "Traceback" not in proc.stderr and "cannot write" in proc.stderr
               and not leftovers and (copy / "last.ckpt").read_bytes() == before)
    return {"attack": "disk full during a save (writes beyond 2%-90% of a checkpoint's size fail with EFBIG)",
            "trials": trials, "held": ok, "outcome": "exit 1, one line, no temporary file, the previous checkpoint kept"}


def concurrent(work: Path, run: Path, trials: int) -> dict:
    ok = 0
    for trial in range(trials):
        copy = work / f"concurrent-{trial}" / run.name
        shutil.copytree(run, copy)
        procs = [subprocess.Popen(command("train", f"resume={copy}", "trainer.max_steps=200"), cwd=work,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
        codes = sorted(code for code, _ in results)
        refused = [err for code, err in results if code == 2]
        step = torch.load(copy / "last.ckpt", weights_only=True)["global_step"]
        ok += codes == [0, 2] and "is being written by flowkit train (pid" in refused[0] and step == 200
    return {"attack": "two resumes of one run directory started together", "trials": trials, "held": ok,
            "outcome": "one refused naming the holder (exit 2), the other finishes"}


def fuzz(work: Path, run: Path, examples: int, rng: random.Random) -> list[dict]:
    from flowkit.interface import commands
    from flowkit.config.schema import apply_overrides, load_recipe, validate
    from flowkit.errors import ConfigError, TrainingError

    keys = ["trainer.max_steps", "optim.lr", "path", "path.sigma_min", "data.batch_size", "seed", "eval.compare",
            "time.s", "model", "trainer", "nope", "data.path.x", "", "a..b", "cond.labels", "trainer.precision",
            "trainer.devices", "name", "model.width", "optim.ema_decay", "trainer.enable_progress_bar"]
    values = ["", "0", "-1", "1e23", "nan", "inf", "[1,2", "{a: 1}", "${oops}", "null", "true", "2", "[euler:1]", "'x'",
              "=", "a=b=c", "../x", "/abs", "x" * 300, "64-true", "1e9", "\n", "euler:0"]
    rows = []
    crashes = 0
    for _ in range(examples):
        tokens = [f"{rng.choice(keys)}={rng.choice(values)}" for _ in range(rng.randint(1, 3))]
        try:
            validate(apply_overrides(load_recipe("rectified"), tokens))
        except ConfigError as exc:
            crashes += "\n" in str(exc).strip()
        except Exception:
            crashes += 1
    rows.append({"attack": "random override strings for train (parse, schema and range checks)", "trials": examples,
                 "held": examples - crashes, "outcome": "valid, or one line (exit 2)"})
    arg_keys = ["n", "rtol", "atol", "seed", "label", "guidance", "repeats", "nll_n", "reference_tol", "grid", "device",
                "solver", "solvers", "out", "nope"]
    arg_values = ["0", "1", "-1", "7", "1e-30", "nan", "inf", "100000000000", "abc", "[1]", "dopri5", "euler:3",
                  "euler:0", "euler:1000000000", "bogus", "cuda", "logsnr", ".", "/dev/null/x.npy", "x.txt", "''"]
    crashes = 0
    for _ in range(examples):
        verb = rng.choice(["sample", "evaluate", "compare"])
        tokens = [f"{rng.choice(arg_keys)}={rng.choice(arg_values)}" for _ in range(rng.randint(1, 3))]
        base = [f"ckpt={run}", "n=20", f"out={work / 'fuzz-out'}"] + (["repeats=1", "nll_n=20"] if verb == "evaluate" else [])
        try:
            with contextlib.chdir(work):  # a fuzzed out= is written relative to the working folder
                getattr(commands, verb)(base + tokens)
        except (ConfigError, TrainingError) as exc:
            crashes += "\n" in str(exc).strip()
        except Exception:
            crashes += 1
    rows.append({"attack": "random arguments for sample / eval / compare on a trained run", "trials": examples,
                 "held": examples - crashes, "outcome": "run, or one line (exit 2 / 1)"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--signals", type=int, default=4)
    parser.add_argument("--concurrent", type=int, default=3)
    parser.add_argument("--fuzz", type=int, default=200)
    parser.add_argument("--interrupts", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        run = train_run(work / "base", "trainer.checkpoint_every=10")
        rows = hostile_files(work, run)
        rows.append(kills(work, args.kills, rng))
        rows.append(signals(work, args.signals))
        rows.append(disk_full(work, run))
        rows.append(concurrent(work, run, args.concurrent))
        rows += fuzz(work, run, args.fuzz, rng)
        rows += surfaces(work, run, args.interrupts, rng)
    lines = ["Faults, re-run by `python bench/faults.py` (trials through the installed `flowkit` command)", "",
             "| attack | trials | held | outcome required |", "|---|---|---|---|"]
    lines += [f"| {r['attack']} | {r['trials']} | {r['held']} | {r['outcome']} |" for r in rows]
    report(args.out, "faults", {"rows": rows, "seed": args.seed}, lines)
    if any(r["held"] != r["trials"] for r in rows):
        raise SystemExit("some trials did not hold (see the table)")


if __name__ == "__main__":
    main()
