"""Class-conditional generation: label dropout while training, classifier-free guidance when sampling.

Ho & Salimans 2022 ("Classifier-Free Diffusion Guidance"): one network learns the conditional and,
through label dropout to a null class, the unconditional velocity; sampling follows

    v_w(x, t | y) = v(x, t | null) + w (v(x, t | y) - v(x, t | null))

so w = 0 is the unconditional model, w = 1 the conditional one and w > 1 sharpens the classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from flowkit.errors import ConfigError
from flowkit.models.network import network_inputs


def drop_labels(y: Tensor, drop: float, null: int) -> Tensor:
    """Each label independently becomes ``null`` with probability ``drop`` (global RNG: seeded per step)."""
    return torch.where(torch.rand(y.shape, device=y.device) < drop, torch.full_like(y, null), y)


def cond_of(batch: dict[str, Any]) -> dict[str, Tensor]:
    """The keyword a method passes to the network: ``{"cond": labels}`` for a labelled batch, else nothing
    (so networks and teachers without labels are called exactly as before)."""
    y = batch.get("y")
    return {} if y is None else {"cond": y}


def guided(net: Callable[..., Tensor], x: Tensor, t: Tensor, *, labels: Tensor, w: Tensor, null: int,
           takes_w: bool | None = None, **inputs: Tensor) -> Tensor:
    """v_u + w (v_c - v_u) with a per-sample w, in one batched network call over [conditional; null]
    (the branches share every weight; further ``inputs`` such as an end time go to both). A network that
    takes w itself (``takes_w``; by default, one whose inputs include "guidance": the student of guided
    distillation) is called once with it instead."""
    if takes_w is None:
        takes_w = "guidance" in network_inputs(net)
    if takes_w:
        return net(x, t, cond=labels, w=w, **inputs)
    both = net(torch.cat([x, x]), torch.cat([t, t]), cond=torch.cat([labels, torch.full_like(labels, null)]),
               **{k: torch.cat([v, v]) for k, v in inputs.items()})
    conditional, unconditional = both.chunk(2)
    w = w.reshape(-1, *([1] * (x.dim() - 1)))
    return unconditional + w * (conditional - unconditional)


@dataclass
class Cond:
    """The conditioning of a sampling call: a label per sample, the guidance weight (None: w = 1, the plain
    conditional model), the null class (the model's class count; 0: the model takes no labels) and a classifier
    whose gradient guides the score (``flowkit.config.guidance``; None: none)."""

    labels: Tensor
    guidance: float | None
    null: int
    classifier: Any = None


def labels_for(n: int, classes: int, label: int, generator: torch.Generator) -> Tensor:
    """``label`` for every sample, or (label = -1) labels drawn uniformly from ``generator``."""
    if label == -1:
        return torch.randint(classes, (n,), generator=generator)
    if not 0 <= label < classes:
        raise ConfigError(f"label={label} is out of range; this model has classes 0..{classes - 1} (or -1: random)")
    return torch.full((n,), label, dtype=torch.long)


def sampling_labels(n: int, classes: int, classifier: Any, label: int | Tensor | None,
                    generator: torch.Generator) -> Tensor | None:
    """The labels ``n`` samples are drawn with: ``label`` (a class, or ``n`` classes), or uniformly random classes
    (None or -1), over the model's ``classes`` or else the guiding ``classifier``'s; None when neither has any
    (and a label asked for then is an error)."""
    classes = classes or (classifier.classes if classifier is not None else 0)
    if not classes:
        if label is not None and not (isinstance(label, int) and label == -1):
            raise ConfigError(f"label={label}: this model was trained without labels (cond.labels=false); sample "
                              f"a class with classifier guidance (classifier=RUN)")
        return None
    if isinstance(label, Tensor):
        if label.shape != (n,) or not ((0 <= label) & (label < classes)).all():
            raise ConfigError(f"label: expected {n} class indices in 0..{classes - 1}")
        return label.long()
    return labels_for(n, classes, -1 if label is None else int(label), generator)


def conditioning(classes: int, labels: Tensor | None, guidance: float | None, classifier: Any = None) -> Cond | None:
    """What samplers get: None for an unconditional model without a classifier, else ``Cond`` (guidance None
    means w = 1). A classifier needs ``labels`` (its classes), whether or not the model takes them."""
    if not classes and guidance is not None:
        raise ConfigError(f"guidance={guidance}: this model was trained without labels (cond.labels=false); "
                          "guidance needs a class-conditional model (or classifier guidance: classifier=RUN)")
    if not classes and classifier is None:
        return None
    return Cond(labels, guidance, classes, classifier)
