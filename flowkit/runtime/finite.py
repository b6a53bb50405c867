"""Watching for non-finite losses and gradients without a host sync per step.

``trainer.on_nonfinite=stop`` (the default) needs to know *that* a value went NaN/inf, not to act on
it before the optimizer step: the first bad (step, kind, value) is recorded on the device with
``torch.where`` (no sync), and read back every ``check_every`` steps and before every checkpoint save,
so a bad state is never written and the error still names the first bad step. On the CPU a read is
free and ``check_every`` defaults to 1. ``skip`` must decide before the step, so it reads every step.
"""

from __future__ import annotations

import math

import torch

from flowkit.errors import TrainingError

KINDS = ("the loss is {value}", "a gradient is not finite")


class FiniteWatch:
    """``kinds``: the message of each kind of value noted (``{value}`` is filled in)."""

    def __init__(self, kinds: list[str] | tuple[str, ...] = KINDS) -> None:
        self.kinds = tuple(kinds)
        self._first: torch.Tensor | None = None  # (step, kind, value) of the first non-finite value; step -1: none
        self._host: tuple[int, int, float] | None = None  # the same, for values that live on the CPU

    def note(self, value: torch.Tensor, step: int, kind: int) -> None:
        """Record ``value`` (a 0-d tensor) if it is the first non-finite one; no host sync. A CPU value is read
        at once (reading it costs nothing; the device-side record costs ~8 small ops a step)."""
        if value.device.type == "cpu":
            if self._host is None and not math.isfinite(x := float(value.detach())):
                self._host = (step, kind, x)
            return
        if self._first is None:
            self._first = torch.tensor([-1.0, -1.0, 0.0], dtype=torch.float64, device=value.device)
        value = value.detach().to(self._first.device, torch.float64)  # never reset: keep the first fault
        new = torch.stack([torch.full_like(value, float(step)), torch.full_like(value, float(kind)), value])
        self._first = torch.where(~torch.isfinite(value) & (self._first[0] < 0), new, self._first)

    def check(self) -> None:
        """Raise ``TrainingError`` naming the first non-finite value, if any (one host sync)."""
        records = [self._host] if self._host is not None else []
        if self._first is not None:
            records += [tuple(self._first.tolist())]
        records = [r for r in records if r[0] >= 0]
        if records:
            step, kind, value = min(records)
            raise TrainingError(f"{self.kinds[int(kind)].format(value=value)} at step {int(step)}")


def total_norm(params) -> torch.Tensor:
    """The 2-norm of all gradients as one device scalar (``torch._foreach_norm``: one kernel per dtype)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
