"""The fault table's rows for the newer surfaces (image folders and archives, samplers with options, messages and
numbers, Ctrl-C at any moment, Weights & Biases, the run lock, runs without their data, the Python API), each
re-run as trials the way a hostile user meets them. Called by `bench/faults.py`; every check is the outcome the
README promises, and a command that runs past its time limit counts as a failure (a hang), not a skip.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import struct
import subprocess
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fault_tools import TINY, cli, one_line, started

IMAGES = ["recipe=digits_rectified", "model=unet", "model.channels=8"]


def rgb(seed: int, h: int = 8, w: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def pets(folder: Path) -> Path:
    for label, name in enumerate(["cat", "dog"]):
        for i in range(3):
            png(folder / name / f"{i}.png", rgb(10 * label + i))
    return folder


def bomb_header(path: Path, side: int = 20000) -> Path:
    """A PNG whose header claims side x side RGB pixels (a few bytes of file)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def npz_claiming(path: Path, shape: tuple) -> Path:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images.npy", buffer.getvalue() + bytes(16))
    return path


def archive(path: Path, labels=None, damage=None) -> Path:
    images = np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3), dtype=np.uint8)
    np.savez(path, images=images, **({} if labels is None else {"labels": np.asarray(labels, dtype=np.int64)}))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:2000])
    elif damage == "crc":
        data = bytearray(path.read_bytes())
        data[300] ^= 0xFF
        path.write_bytes(bytes(data))
    return path


def hostile_images(work: Path) -> dict:
    """Image folders and archives no one should train on: each one line, exit 2, before any run directory."""
    folder = work / "images"
    cases = {}
    beside = pets(folder / "beside")
    png(beside / "loose.png", rgb(50))
    cases["images beside class subfolders"] = f"data.target=folder:{beside}"
    empty = pets(folder / "empty")
    (empty / "zebra").mkdir()
    cases["an empty class folder last in sort order"] = f"data.target=folder:{empty}"
    fifo = pets(folder / "fifo")
    os.mkfifo(fifo / "cat" / "9.png")
    cases["a FIFO named 9.png"] = f"data.target=folder:{fifo}"
    bomb = pets(folder / "bomb")
    bomb_header(bomb / "cat" / "9.png")
    cases["a 20000x20000 PNG header"] = f"data.target=folder:{bomb}"
    text = pets(folder / "text")
    (text / "cat" / "9.png").write_text("not an image")
    cases["text named 9.png"] = f"data.target=folder:{text}"
    wide = folder / "wide"
    png(wide / "0.png", rgb(0))
    png(wide / "1.png", rgb(1)[:, :, 0])
    cases["a grayscale image among colour ones"] = f"data.target=folder:{wide}"
    (folder / "zero.npz").write_bytes(b"")
    cases["a zero-byte .npz"] = f"data.target=images:{folder / 'zero.npz'}"
    cases["a truncated .npz"] = f"data.target=images:{archive(folder / 'cut.npz', damage='truncated')}"
    cases["an .npz failing its CRC"] = f"data.target=images:{archive(folder / 'crc.npz', damage='crc')}"
    cases["an .npz member claiming 11 GB"] = f"data.target=images:{npz_claiming(folder / 'big.npz', (60000, 256, 256, 3))}"
    for value in (-1, 2**63 - 1):
        labels = [0, 1] * 31 + [2, value]
        cases[f"labels holding {value}"] = f"data.target=images:{archive(folder / f'labels{value}.npz', labels)}"
    rows = [(name, ["train", *IMAGES, override]) for name, override in cases.items()]
    (folder / "zero.npy").write_bytes(b"")
    rows.append(("a zero-byte .npy", ["train", f"data.path={folder / 'zero.npy'}"]))
    beyond = np.random.default_rng(0).normal(size=(64, 2))
    beyond[3, 1] = 1e39
    np.save(folder / "beyond.npy", beyond)
    rows.append(("float64 beyond float32's range", ["train", f"data.path={folder / 'beyond.npy'}"]))
    np.save(folder / "wide-rows.npy", np.zeros((4, 100000), np.float32))
    rows.append(("data of shape (4, 100000)", ["train", f"data.path={folder / 'wide-rows.npy'}"]))
    ok = 0
    for i, (name, args) in enumerate(rows):
        never = work / f"never-image-{i}"
        proc = cli(*args, f"run_root={never}", *TINY, "trainer.max_steps=5", cwd=work, timeout=120)
        held = one_line(proc, 2) and not never.exists()
        ok += held
        if not held:
            print(f"  image input '{name}': exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return {"attack": "hostile image folders and archives (images beside class folders, an empty class, a FIFO, a "
            "20000x20000 header, text or a mixed mode as an image; zero-byte, truncated, CRC-failing or lying .npz; "
            "labels -1 and 2^63-1; float64 beyond float32; 4 rows of 100,000)", "trials": len(rows), "held": ok,
            "outcome": "exit 2, one line, no hang, before any run directory"}


def faithful_images(work: Path) -> dict:
    """Every mode Pillow reads arrives with its true range; a symlink loop is not followed (library, in process)."""
    from PIL import Image

    from flowkit.data.pair import build_pair

    def load(folder: Path):
        return build_pair("gaussian", f"folder:{folder}", None)[1].data.numpy()

    base = [Image.fromarray(rgb(i, 10, 12)) for i in range(3)]
    expected = {mode: lambda image, mode=mode: np.asarray(image.convert(mode).convert(
        "L" if mode in ("1", "L", "LA") else "RGB")) for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK")}
    trials = ok = 0
    for mode, want in expected.items():
        folder = work / "modes" / mode
        folder.mkdir(parents=True)
        for i, image in enumerate(base):
            image.convert(mode).save(folder / f"{i}.{'jpg' if mode == 'CMYK' else 'png'}", quality=100)
        got = load(folder)
        reread = [Image.open(folder / f"{i}.{'jpg' if mode == 'CMYK' else 'png'}") for i in range(3)]
        trials += 1
        ok += all(np.array_equal(got[i].transpose(1, 2, 0).squeeze(-1) if got.shape[1] == 1 else
                                 got[i].transpose(1, 2, 0), want(image)) for i, image in enumerate(reread))
    rng = np.random.default_rng(0)
    for mode, make, scale in (("I;16", lambda: rng.integers(178, 63618, (6, 7)).astype(np.uint16), 1 / 257),
                              ("F", lambda: rng.uniform(0, 1, (6, 7)).astype(np.float32), 255)):
        folder = work / "modes" / mode.replace(";", "")
        folder.mkdir(parents=True)
        arrays = [make() for _ in range(3)]
        for i, array in enumerate(arrays):
            Image.fromarray(array).save(folder / f"{i}.{'tiff' if mode == 'F' else 'png'}")
        if mode == "F":  # a folder reads png / jpg; a float TIFF is decoded by the same function, one by one
            from flowkit.data.images import decode
            got = np.stack([decode(folder / f"{i}.tiff", None, None) for i in range(3)])
        else:
            got = load(folder)
        trials += 1
        ok += np.array_equal(got, np.stack([np.rint(a.astype(np.float64) * scale).astype(np.uint8) for a in arrays])[:, None])
    loop = pets(work / "loop")
    (loop / "cat" / "loop").symlink_to(loop / "cat", target_is_directory=True)
    trials += 1
    ok += load(loop).shape[0] == 6
    return {"attack": "image modes 1, L, LA, P, RGB, RGBA, CMYK, 16-bit and float; a symlink loop in a class folder",
            "trials": trials, "held": ok, "outcome": "pixels equal to the mode's true range on 0..255; the loop not followed"}


def options_and_numbers(work: Path, run: Path) -> dict:
    """Values a user can type that used to crash, hang, overflow or write NaN: each one line, nothing written."""
    out = work / "opt-out.npy"
    long_out = work / ("o" * 236 + ".npy")  # a valid name whose temporary file's name would be too long
    sample = ["sample", f"ckpt={run}", "n=20", f"out={out}"]
    train = ["train", *TINY, "trainer.max_steps=5"]
    cases = [  # (arguments, exit code, text the message must hold verbatim)
        ([*sample, "solver=euler:\u00b2"], 2, "euler:\u00b2"),
        ([*sample, "solver=euler:\u0664"], 2, "euler:\u0664"),
        ([*sample, "seed=18446744073709551616"], 2, "seed=18446744073709551616"),
        ([*sample, "seed=9223372036854775808"], 2, "seed=9223372036854775808"),
        ([*sample, "grid=karras:1e-300", "solver=euler:4"], 2, "karras:1e-300"),
        ([*sample, "solver=dopri5", "rtol=1e-300", "atol=1e-300"], 2, "rtol"),
        ([*sample, "solver=pc:10:corrector_steps=100000000"], 2, "corrector_steps"),
        ([*sample, "solver=euler:1000000000"], 2, "1000000000"),
        ([*sample, "guidance=nan"], 2, "guidance=nan"),
        ([*sample, "guidance=inf"], 2, "guidance=inf"),
        ([*sample, "classifier=x", "classifier_scale=inf"], 2, "classifier_scale=inf"),
        ([*sample, "solver=em:10:scale=1e300"], 1, "non-finite"),
        ([*sample, "solver=edm:18:churn=40:noise=inf"], 2, "noise=inf"),
        ([*sample, "n=100000000000"], 2, "n=100000000000"),
        (["sample", "ckpt=runs/[bold]nope", f"out={out}"], 2, "runs/[bold]nope"),
        (["sample", f"ckpt={run}", "n=5", "out=" + "x" * 5000 + ".npy"], 2, "xxxx"),
        (["eval", f"ckpt={run}", "n=1000000000"], 2, "n=1000000000"),
        (["compare", f"ckpt={run}", "solvers=euler:\u00b2", f"out={work / 'c'}"], 2, "euler:\u00b2"),
        ([*train, "recipe=[/x]"], 2, "[/x]"),
        ([*train, "recipe=" + "r" * 5000], 2, "rrrr"),
        ([*train, f"data.target=folder:{work / 'a[/b]'}"], 2, "a[/b]"),
        ([*train, "trainer.logger=tensorboard-nope"], 2, "tensorboard-nope"),
        ([*train, "trainer.strategy=bogus"], 2, "bogus"),
        ([*train, "trainer.devices=-1"], 2, "-1"),
        ([*train, "seed=18446744073709551616"], 2, "18446744073709551616"),
        ([*train, "eval.n=1e9"], 2, "eval.n"),
        ([*train, "eval.repeats=1e8"], 2, "eval.repeats"),
        ([*train, "optim.lr=inf"], 2, "optim.lr=inf"),
        ([*train, "model.depth=100000"], 2, "depth=100000"),
        (["train", f"resume={run}", "recipe=ot_cfm"], 2, "recipe"),
    ]
    ok = 0
    for i, (args, code, said) in enumerate(cases):
        never = work / f"never-option-{i}"
        args = args + ([f"run_root={never}"] if args[0] == "train" and not args[1].startswith("resume=") else [])
        before = sorted(p.name for p in run.iterdir())
        proc = cli(*args, cwd=work, timeout=120)
        held = (one_line(proc, code) and said in proc.stderr and not out.exists() and not never.exists()
                and not list(work.glob(".*tmp*")) and sorted(p.name for p in run.iterdir()) == before)
        ok += held
        if not held:
            print(f"  option {' '.join(args[2:])[:120]}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    proc = cli("sample", f"ckpt={run}", "n=20", f"out={long_out}", cwd=work, timeout=120)  # valid: written
    ok += proc.returncode == 0 and long_out.is_file() and not list(work.glob(".*tmp*"))
    return {"attack": "sampler options, numbers, markup and names (unicode digits, seeds of 2^63 and 2^64, tiny grids "
            "and tolerances, 10^9 corrector steps, NaN / inf guidance and noise, overflowing scales, [markup] in "
            "values, 5,000-character names, bad strategies and devices, eval sizes, depth 100,000, resume with a "
            "recipe; a valid 240-character out=)", "trials": len(cases) + 1, "held": ok,
            "outcome": "exit 2 (1 for samples that overflow), one line holding the value as typed, nothing written; "
                       "the valid name written"}


def interrupts(work: Path, trials: int, rng: random.Random) -> list[dict]:
    """Ctrl-C while flowkit starts (imports, recipe, data) and during the final evaluation."""
    ok = 0
    for trial in range(trials):
        root = work / f"ctrl-c-{trial}"
        proc = started("train", f"run_root={root}", *TINY, "trainer.max_steps=100000", cwd=work,
                       timeout=rng.uniform(0.05, 3.0), ready=lambda: bool(list(root.glob("*/logs/metrics.csv"))))
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        ok += (proc.returncode == 130 and "Traceback" not in stderr and "interrupted" in stderr
               and len(stderr.strip().splitlines()) <= 2)
    rows = [{"attack": "Ctrl-C in the first 0-3 s of flowkit train (importing, building, the first steps)",
             "trials": trials, "held": ok, "outcome": "exit 130, 'interrupted' in one line, no traceback"}]
    ok = 0
    for trial in range(2):
        root = work / f"ctrl-c-eval-{trial}"
        proc = started("train", f"run_root={root}", *TINY[:-1], "trainer.max_steps=5", "eval.n=20000",
                       "eval.solver=dopri5", "eval.rtol=1e-9", "eval.atol=1e-9", cwd=work,
                       ready=lambda: bool(list(root.glob("*/last.ckpt"))))
        time.sleep(0.3 + trial)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        runs = list(root.iterdir())
        ok += (proc.returncode == 130 and len(runs) == 1 and f"flowkit eval ckpt={runs[0]}" in stderr
               and "Traceback" not in stderr and (runs[0] / "last.ckpt").is_file())
    rows.append({"attack": "Ctrl-C during the final evaluation", "trials": 2, "held": ok,
                 "outcome": "exit 130, the trained run kept, how to evaluate it said"})
    return rows


def weights_and_biases(work: Path) -> dict:
    """A stand-in wandb package (the real one is not a dependency): each failure said before the run directory."""
    site = work / "wandb-site"
    (site / "wandb").mkdir(parents=True)
    (site / "wandb" / "__init__.py").write_text("")
    home = work / "wandb-home"
    home.mkdir()
    base = {"PYTHONPATH": str(site), "HOME": str(home), "NETRC": str(home / ".netrc"), "WANDB_API_KEY": "",
            "WANDB_MODE": "", "WANDB_BASE_URL": ""}
    shadow = work / "wandb-shadow"
    (shadow / "wandb" / "run-20261205_1").mkdir(parents=True)
    cases = [("not logged in", base, work, "wandb login"),
             ("online without a network", {**base, "WANDB_API_KEY": "k" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"},
              work, "cannot reach 127.0.0.1:9"),
             ("a ./wandb folder of run files", {"PYTHONPATH": "", "WANDB_MODE": "offline"}, shadow, "not the installed")]
    ok = 0
    for i, (name, env, cwd, said) in enumerate(cases):
        never = work / f"never-wandb-{i}"
        started = time.time()
        args = ["train", f"run_root={never}", *TINY, "trainer.max_steps=5", "trainer.logger=wandb"]
        if cwd == shadow:  # python -m flowkit puts the working directory first on the path
            import sys
            full = {**os.environ, **env, "COLUMNS": "200"}
            proc = subprocess.run([sys.executable, "-m", "flowkit", *args], cwd=cwd, capture_output=True, text=True,
                                  timeout=120, env={k: v for k, v in full.items() if v != ""})
        else:
            proc = cli(*args, cwd=cwd, timeout=120, env=env)
        ok += one_line(proc, 2) and said in proc.stderr and not never.exists() and time.time() - started < 60
        if not (one_line(proc, 2) and said in proc.stderr):
            print(f"  wandb {name}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return {"attack": "Weights & Biases not logged in, online without a network, shadowed by a ./wandb folder "
            "(a stand-in package)", "trials": len(cases), "held": ok,
            "outcome": "exit 2, one line, in seconds, before any run directory"}


def lock_deleted(work: Path, trials: int) -> dict:
    """`rm RUN/.lock` while a run trains, then a second writer: refused, the first run's log continuous."""
    ok = 0
    for trial in range(trials):
        root = work / f"lock-{trial}"
        first = started("train", f"run_root={root}", *TINY, "trainer.max_steps=100000", "trainer.checkpoint_every=50",
                        "trainer.log_every_n_steps=5", cwd=work, stdout=subprocess.DEVNULL,
                        ready=lambda: bool(list(root.glob("*/last.ckpt"))))
        run = next(root.iterdir())
        (run / ".lock").unlink(missing_ok=True)
        second = cli("train", f"resume={run}", "trainer.max_steps=200000", cwd=work, timeout=120)
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
        steps = [int(line.split(",")[1]) for line in (run / "logs" / "metrics.csv").read_text().splitlines()[1:]
                 if line.split(",")[1].isdigit()] if (run / "logs" / "metrics.csv").is_file() else []
        held = (one_line(second, 2) and "is being written by pid" in second.stderr
                and len(steps) == len(set(steps)) and first.returncode == 130)
        ok += held
        if not held:
            print(f"  lock: second exit {second.returncode}: {second.stderr.strip()[-200:]}; first exit "
                  f"{first.returncode}; {len(steps)} steps logged, {len(set(steps))} distinct")
    return {"attack": "RUN/.lock deleted while the run trains, then flowkit train resume=RUN", "trials": trials,
            "held": ok, "outcome": "the second writer refused naming the holder's pid (exit 2); no step logged twice"}


def data_gone(work: Path) -> dict:
    """A run trained on a relative data.path: sampled, compared and inverted from elsewhere once the file is gone;
    resumed on a replaced file of the same shape: refused."""
    home = work / "data-home"
    home.mkdir()
    rng = np.random.default_rng(0)
    np.save(home / "mine.npy", rng.normal(size=(256, 2)).astype(np.float32))
    proc = cli("train", "data.path=mine.npy", "run_root=runs", *TINY, "trainer.max_steps=10", cwd=home)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    run = next((home / "runs").iterdir())
    np.save(home / "mine.npy", rng.normal(size=(256, 2)).astype(np.float32))  # same shape, other numbers
    resumed = cli("train", f"resume={run}", "trainer.max_steps=20", cwd=home)
    (home / "mine.npy").unlink()
    elsewhere = work / "data-elsewhere"
    elsewhere.mkdir()
    sampled = cli("sample", f"ckpt={run}", "n=50", "out=s.npy", cwd=elsewhere)
    compared = cli("compare", f"ckpt={run}", "solvers=euler:4", "n=50", "out=c", cwd=elsewhere)
    inverted = cli("invert", f"ckpt={run}", "in=s.npy", "out=z.npy", cwd=elsewhere) if sampled.returncode == 0 else sampled
    checks = [one_line(resumed, 2) and "sha256" in resumed.stderr,
              sampled.returncode == 0 and (elsewhere / "s.npy").is_file(),
              compared.returncode == 0 and "mine.npy" in compared.stdout + compared.stderr,
              inverted.returncode == 0 and (elsewhere / "z.npy").is_file()]
    return {"attack": "a run's relative data file replaced (same shape) or deleted; sample, compare and invert from "
            "another folder", "trials": len(checks), "held": sum(checks),
            "outcome": "the resume refused naming the hash; sample, compare (metric '-', the file named) and invert run"}


def python_api(work: Path, run: Path) -> dict:
    """Bad values through the Python API: ConfigError only, one line; paths, numpy and tensor values accepted."""
    import torch

    import flowkit

    flow = flowkit.load(run)
    never = str(work / "api-never")
    bad = [lambda: flowkit.load(None), lambda: flowkit.load(123), lambda: flowkit.load(run, device="cuda:abc"),
           lambda: flowkit.load(run, device="tpu"), lambda: flowkit.load(work / "no" / "run"),
           lambda: flow.sample(True), lambda: flow.sample(10**11), lambda: flow.sample(0), lambda: flow.sample(2.5),
           lambda: flow.sample(10, sampler="rk5"), lambda: flow.sample(10, sampler="euler:\u00b2"),
           lambda: flow.sample(10, label=3), lambda: flow.sample(10, guidance=float("nan")),
           lambda: flow.sample(10, sampler="pc:10:corrector_steps=100000000"),
           lambda: flow.sample(10, sampler="dopri5", rtol=1e-300, atol=1e-300),
           lambda: flow.velocity(torch.zeros(4, 2), t="abc"), lambda: flow.velocity(torch.zeros(4, 2), t=torch.zeros(3)),
           lambda: flow.velocity(torch.zeros(4, 2), t=float("nan")), lambda: flow.velocity(torch.zeros(4, 3), t=0.5),
           lambda: flow.invert(torch.zeros(4, 3)), lambda: flow.invert(torch.ones(4, 2), sampler="pc:4"),
           lambda: flowkit.compare([run], ["euler:0"]), lambda: flowkit.compare([run], ["euler:2"], n=1),
           lambda: flowkit.compare([run], ["euler:2"], grid="logsnrr"),
           lambda: flowkit.train("rectifed", run_root=never), lambda: flowkit.train("rectified", run_root=never, optim={"lr": float("inf")}),
           lambda: flowkit.train("rectified", run_root=never, trainer={"max_steps": object()}),
           lambda: flowkit.train("rectified", run_root=never, trainer={"max_stepz": 5}),
           lambda: flowkit.train("rectified", run_root=never, seed=2**64), lambda: flowkit.train("rectified", run_root=never, recipe_x=1),
           lambda: flowkit.train("rectified", run_root=never, model={"depth": 100000})]
    ok = 0
    for call in bad:
        try:
            call()
        except flowkit.ConfigError as exc:
            ok += "\n" not in str(exc).strip() and not (work / "api-never").exists()
        except Exception as exc:  # noqa: BLE001 - counted, and printed for the reader
            print(f"  API: {type(exc).__name__}: {exc}"[:300])
        else:
            print("  API: a bad call returned")
    trained = flowkit.train("rectified", run_root=work / "api-runs", trainer={"max_steps": np.int64(3),
                            "enable_progress_bar": np.bool_(False)}, optim={"lr": torch.tensor(1e-3)},
                            eval={"n": np.int32(50), "repeats": 1, "compare": []})
    good = [trained.summary["steps"] == 3, flow.sample(np.int64(5)).shape == (5, 2),
            flowkit.load(Path(run)).sample(torch.tensor(4)).shape == (4, 2)]
    return {"attack": "bad values through the Python API (None, numbers for paths, unknown devices, booleans, 10^11 "
            "samples, text or wrong-length times, NaN guidance, impossible tolerances, bad recipes and options); "
            "pathlib paths, numpy scalars and tensors as values", "trials": len(bad) + len(good),
            "held": ok + sum(good), "outcome": "ConfigError in one line, nothing written; the good values accepted"}


def surfaces(work: Path, run: Path, interrupt_trials: int, rng: random.Random) -> list[dict]:
    work = work / "surfaces"
    work.mkdir()
    rows = [hostile_images(work), faithful_images(work), options_and_numbers(work, run)]
    rows += interrupts(work, interrupt_trials, rng)
    rows += [weights_and_biases(work), lock_deleted(work, 2), data_gone(work), python_api(work, run)]
    shutil.rmtree(work, ignore_errors=True)
    return rows
