"""Progress for runs without a terminal (``> log``, nohup, CI): one plain line at a steady interval.

A progress bar redraws one line in place, which a log file receives only at the end (or as a mess of
carriage returns). ``ProgressLines`` prints ``step N/M (P%), loss L, S steps/s, ETA T`` to stderr every
``every_s`` seconds of wall time, says where a resumed run starts, and prints the final step.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import lightning as L


class ProgressLines(L.Callback):
    def __init__(self, every_s: float = 30.0, stream: TextIO | None = None) -> None:
        self.every_s = every_s
        self.stream = stream
        self._last = 0.0
        self._start_step = 0
        self._start = 0.0
        self._outputs: Any = None

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_step, self._start = trainer.global_step, time.perf_counter()
        self._last = self._start
        if trainer.global_step > 0:
            self._print(f"resumed at step {trainer.global_step} of {trainer.max_steps}")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._outputs = outputs  # kept as a tensor: read (one host sync) only when a line is printed
        now = time.perf_counter()
        if now - self._last >= self.every_s and trainer.is_global_zero:
            self._last = now
            self._print(self.line(trainer, outputs, now))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._print(self.line(trainer, self._outputs, time.perf_counter()))

    def line(self, trainer: L.Trainer, outputs: Any, now: float) -> str:
        step, total = trainer.global_step, trainer.max_steps
        rate = (step - self._start_step) / max(now - self._start, 1e-9)
        text = f"step {step}/{total} ({100 * step / total:.0f}%)"
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and hasattr(loss, "item"):
            text += f", loss {float(loss.detach()):.4g}"  # a host sync, once per line
        text += f", {rate:.1f} steps/s"
        if rate > 0 and step < total:
            text += f", ETA {(total - step) / rate:.0f} s"
        return text
