"""Progress of a long loop that is not training (encoding a dataset into latents): a rich bar on a terminal, a
plain line every ``every_s`` seconds otherwise (``> log``, nohup, CI), each with the rate and an ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Ticker:
    """``with Ticker("encoding", total, "images") as tick: ... tick(done)``; ``done`` counts from ``start``;
    ``total`` None where it is not known in advance (no share, no ETA)."""

    def __init__(self, what: str, total: int | None, unit: str, start: int = 0, every_s: float = 30.0,
                 stream: TextIO | None = None) -> None:
        self.what, self.total, self.unit, self.start, self.every_s = what, total, unit, start, every_s
        self.stream = stream or sys.stderr
        self.done = start
        self._bar = None

    def __enter__(self) -> Ticker:
        self._began = self._last = time.perf_counter()
        if self.stream.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn(self.what), BarColumn(), MofNCompleteColumn(), TextColumn(self.unit),
                                 TimeRemainingColumn(), transient=False)
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total, completed=self.start)
        elif self.start:
            self._print(f"{self.what}: resuming at {self.start:,}/{self.total:,} {self.unit}")
        return self

    def __call__(self, done: int) -> None:
        self.done = done
        if self._bar is not None:
            self._bar.update(self._task, completed=done)
            return
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._last = now
            self._print(self.line(now))

    def line(self, now: float) -> str:
        rate = (self.done - self.start) / max(now - self._began, 1e-9)
        if self.total is None:
            return f"{self.what}: {self.done:,} {self.unit}, {rate:.1f} {self.unit}/s"
        text = f"{self.what}: {self.done:,}/{self.total:,} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%), " \
               f"{rate:.1f} {self.unit}/s"
        if rate > 0 and self.done < self.total:
            text += f", ETA {(self.total - self.done) / rate:.0f} s"
        return text

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif exc[0] is None:
            self._print(self.line(time.perf_counter()))
