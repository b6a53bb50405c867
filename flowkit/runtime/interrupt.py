"""Ctrl-C outside a training step: one line saying what was kept, exit code 130, never a traceback.

The command line installs ``on_interrupt`` as the SIGINT handler before it imports anything heavy (an interrupt
while modules import used to surface as a long RuntimeError); training replaces it while it fits (stop after the
current step and save) and puts it back after. What the line says is the current ``hint``: the training loop sets
it as the run advances (the run directory made, the run trained and being evaluated). Every file flowkit writes is
written atomically, so leaving at once loses nothing that was written whole. A process forked from the command
line (a DataLoader worker) keeps Python's own behaviour.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

_STATE: dict[str, Any] = {"hint": "nothing was written", "pid": None}


def set_hint(text: str) -> None:
    """What an interrupt from now on says was kept."""
    _STATE["hint"] = text


def on_interrupt(signum: int, frame: Any) -> None:
    if os.getpid() != _STATE["pid"]:  # a forked process: Python's KeyboardInterrupt, handled by its own loop
        raise KeyboardInterrupt
    sys.stderr.write(f"interrupted: {_STATE['hint']}\n")
    sys.stderr.flush()
    os._exit(128 + signal.SIGINT)


def install() -> None:
    """``on_interrupt`` for SIGINT in this (the command line's) process."""
    _STATE["pid"] = os.getpid()
    signal.signal(signal.SIGINT, on_interrupt)
