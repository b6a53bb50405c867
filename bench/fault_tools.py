"""What the fault scripts share: the installed `flowkit` command run as a user would (optionally under a file-size
limit, so that writes fail with EFBIG as on a full disk, or with a time limit that counts a hang as a failure),
the one-line check every refusal must pass, and a short trained run to attack."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

TINY = ["trainer.enable_progress_bar=false", "eval.repeats=1", "eval.compare=[]", "model.width=64", "eval.n=200"]
HUNG = -999  # the return code given to a command that outlived its time limit


def command(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "flowkit"), *args]


def cli(*args: str, cwd: Path, limit_bytes: int | None = None, timeout: float = 600,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``flowkit ARGS`` in ``cwd``; one that runs past ``timeout`` seconds is killed and returns code HUNG."""

    def file_size_limit() -> None:  # writes past it fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    try:
        return subprocess.run(command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "COLUMNS": "200", **(env or {})},
                              preexec_fn=file_size_limit if limit_bytes else None)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, HUNG, exc.stdout or "", f"hung for {timeout} s")


def one_line(proc: subprocess.CompletedProcess, code: int) -> bool:
    return proc.returncode == code and "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def train_run(root: Path, *extra: str, steps: int = 20) -> Path:
    proc = cli("train", f"trainer.max_steps={steps}", f"run_root={root}", *TINY, *extra, cwd=root.parent)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return next(p for p in root.iterdir() if p.is_dir())


def started(*args: str, cwd: Path, ready: Callable[[], bool], timeout: float = 120,
            stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.PIPE) -> subprocess.Popen:
    """``flowkit ARGS`` started in the background, returned once ``ready()`` holds (or after ``timeout`` s)."""
    proc = subprocess.Popen(command(*args), cwd=cwd, stdout=stdout, stderr=stderr, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline and not ready():
        time.sleep(0.02)
    return proc
