"""Class-conditional generation: label dropout while training, classifier-free guidance when sampling.

Ho & Salimans 2022 ("Classifier-Free Diffusion Guidance"): one network learns the conditional and,
through label dropout to a null class, the unconditional velocity; sampling follows

    v_w(x, t | y) = v(x, t | null) + w (v(x, t | y) - v(x, t | null))

so w = 0 is the unconditional model, w = 1 the conditional one and w > 1 sharpens the classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowkit.errors import ConfigError


def drop_labels(y: Tensor, drop: float, null: int) -> Tensor:
    """Each label independently becomes ``null`` with probability ``drop`` (global RNG: seeded per step)."""
    return torch.where(torch.rand(y.shape, device=y.device) < drop, torch.full_like(y, null), y)


def cond_of(batch: dict[str, Any]) -> dict[str, Tensor]:
    """The keyword a method passes to the network: ``{"cond": labels}`` for a labelled batch, else nothing
    (so networks and teachers without labels are called exactly as before)."""
    y = batch.get("y")
    return {} if y is None else {"cond": y}


def guided(net: nn.Module, x: Tensor, t: Tensor, *args: Tensor, labels: Tensor, w: Tensor, null: int) -> Tensor:
    """v_u + w (v_c - v_u) with a per-sample w, in one batched network call over [conditional; null]
    (the branches share every weight); a network that takes w itself (``guidance_input``, the student
    of guided distillation) is called once with it instead."""
    if getattr(net, "guidance_input", False):
        return net(x, t, *args, cond=labels, w=w)
    both = net(torch.cat([x, x]), torch.cat([t, t]), *(torch.cat([a, a]) for a in args),
               cond=torch.cat([labels, torch.full_like(labels, null)]))
    conditional, unconditional = both.chunk(2)
    w = w.reshape(-1, *([1] * (x.dim() - 1)))
    return unconditional + w * (conditional - unconditional)


class Guided(nn.Module):
    """A class-conditional network seen as an unconditional one: ``forward(x, t[, t_end])`` returns the
    guided output for fixed ``labels`` and weight ``guidance`` (``guided``); w = 1 is one plain
    conditional call."""

    def __init__(self, net: nn.Module, labels: Tensor, guidance: float, null: int) -> None:
        super().__init__()
        self.net, self.labels, self.guidance, self.null = net, labels, guidance, null

    def forward(self, x: Tensor, t: Tensor, *args: Tensor) -> Tensor:
        if x.shape[0] > self.labels.shape[0]:
            raise ValueError(f"{x.shape[0]} samples but only {self.labels.shape[0]} labels")
        labels = self.labels[: x.shape[0]].to(x.device)  # a prefix of the batch keeps its labels
        if self.guidance == 1.0 and not getattr(self.net, "guidance_input", False):
            return self.net(x, t, *args, cond=labels)
        w = torch.full((x.shape[0],), self.guidance, device=x.device, dtype=x.dtype)
        return guided(self.net, x, t, *args, labels=labels, w=w, null=self.null)


def labels_for(n: int, classes: int, label: int, generator: torch.Generator) -> Tensor:
    """``label`` for every sample, or (label = -1) labels drawn uniformly from ``generator``."""
    if label == -1:
        return torch.randint(classes, (n,), generator=generator)
    if not 0 <= label < classes:
        raise ConfigError(f"label={label} is out of range; this model has classes 0..{classes - 1} (or -1: random)")
    return torch.full((n,), label, dtype=torch.long)


def conditioned(model: nn.Module, classes: int, labels: Tensor | None, guidance: float | None) -> nn.Module:
    """What samplers see: ``model`` itself for an unconditional model, else ``Guided`` with ``labels``
    (guidance None means w = 1, plain conditional sampling)."""
    if not classes:
        if guidance is not None:
            raise ConfigError(f"guidance={guidance}: this model was trained without labels (cond.labels=false); "
                              "guidance needs a class-conditional model")
        return model
    return Guided(model, labels, 1.0 if guidance is None else guidance, classes)
