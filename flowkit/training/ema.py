"""The model's EMA, a Lightning ``WeightAveraging``: the checkpoint's ``state_dict`` holds the EMA weights (what
sampling uses) and ``current_model_state`` the raw ones."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging

class EMA(WeightAveraging):
    """EMA of the weights after every optimizer step, as Lightning's ``EMAWeightAveraging`` (same checkpoint
    layout), but with one multi-tensor lerp per device and dtype instead of one update per tensor. The EMA is
    copied into the model by ``to_model`` after fit, not in ``on_train_end``: the final checkpoint (written
    in ``on_train_end``, after every other callback's) must hold the raw weights as ``current_model_state``."""

    def __init__(self, decay: float, warmup: bool = True) -> None:
        super().__init__(multi_avg_fn=self._update)
        self.decay, self.warmup, self._step = decay, warmup, 0

    def decay_at(self, step: int) -> float:
        """The decay after ``step`` optimizer steps: ``min(d, (1 + step) / (10 + step))`` with the warm-up (0.25 at
        step 2, 0.9 at step 80, d = 0.999 from step 8991 on), so a short run samples from its recent weights and
        not from its initial ones; ``d`` throughout without it."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    def short_run_note(self, steps: int) -> str | None:
        """What a run of ``steps`` shorter than the EMA horizon 1 / (1 - d) should know (None: nothing)."""
        horizon = round(1 / (1 - self.decay)) if self.decay < 1 else math.inf
        if steps >= horizon:
            return None
        said = f"trainer.max_steps={steps} is shorter than the EMA horizon of optim.ema_decay={self.decay} ({horizon:.0f} steps)"
        if self.warmup:
            end = self.decay_at(steps)
            return f"{said}: the EMA warmed up (decay {end:.3f} at the end: it averages about the last {1 / (1 - end):.0f} steps)"
        return (f"{said} and optim.ema_warmup=false: {self.decay ** (steps - 1):.0%} of the EMA is still the initial "
                f"weights, so samples come from a mostly untrained network; set optim.ema_warmup=true or lower optim.ema_decay")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # a method's further networks are not averaged unless they ask ("ema": True): their copy follows them
        self.followed = {p.data_ptr() for name, net in getattr(pl_module, "networks", {}).items()
                         if name not in pl_module.averaged for p in [*net.parameters(), *net.buffers()]}

    @torch.no_grad()
    def _update(self, averaged: list[torch.Tensor], current: list[torch.Tensor], _: Any) -> None:
        if not averaged[0].is_floating_point():  # integer buffers (counters): the current value
            torch._foreach_copy_(averaged, current)
            return
        if getattr(self, "followed", None):
            follow = [i for i, c in enumerate(current) if c.data_ptr() in self.followed]
            if follow:
                torch._foreach_copy_([averaged[i] for i in follow], [current[i] for i in follow])
                keep = sorted(set(range(len(current))) - set(follow))
                averaged, current = [averaged[i] for i in keep], [current[i] for i in keep]
                if not current:
                    return
        torch._foreach_lerp_(averaged, current, 1.0 - self.decay_at(self._step))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._step = trainer.global_step  # read on the host: no device sync for the decay
        super().on_train_batch_end(trainer, pl_module, *args)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def to_model(self, pl_module: L.LightningModule) -> None:
        """Sampling weights: the EMA copied into the model (what Lightning's ``on_train_end`` does)."""
        if self._average_model is not None:
            self._copy_average_to_current(pl_module)
