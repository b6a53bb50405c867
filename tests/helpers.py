"""Shared helpers for tests that train (tiny budgets, no progress bar, runs under tmp_path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

QUIET = ["trainer.enable_progress_bar=false", "eval.repeats=1", "eval.compare=[]", "model.width=64"]


def tiny(tmp_path: Path, *extra: str, steps: int = 30) -> list[str]:
    return [f"trainer.max_steps={steps}", f"run_root={tmp_path / 'runs'}", "eval.n=200", *QUIET, *extra]


def flowkit_command() -> list[str]:
    """The installed console script (what users run), next to this interpreter."""
    script = Path(sys.executable).parent / "flowkit"
    return [str(script)] if script.exists() else [shutil.which("flowkit") or "flowkit"]


def run_cli(args: list[str], cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", **(env_extra or {})}
    return subprocess.run(flowkit_command() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def killed(args: list[str], cwd: Path, done, timeout: float = 180) -> None:
    """Start ``flowkit ARGS`` and kill it with SIGKILL as soon as ``done()`` holds (or after ``timeout`` s)."""
    import signal
    import time

    proc = subprocess.Popen(flowkit_command() + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and not done():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
