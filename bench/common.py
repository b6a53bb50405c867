"""What every bench script shares: running the installed `flowkit` command as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def flowkit(*args: str) -> subprocess.CompletedProcess:
    """Run `flowkit ARGS...` (the console script next to this interpreter); exit with its stderr on failure."""
    exe = Path(sys.executable).parent / "flowkit"
    command = [str(exe) if exe.exists() else shutil.which("flowkit") or "flowkit", *args]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)}\n{proc.stderr}")
    return proc
