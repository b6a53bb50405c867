"""A registered backbone composed with the inputs that a method and a run need, and nothing else.

A backbone (``flowkit.models``) is ``v(x, t, emb=None)``, and declares ``emb_dim`` (the size of the
vector ``emb`` it adds to its own time embedding), ``time_dim`` and ``time_scale`` (the sinusoidal
features it embeds time with). ``Conditioned`` adds to it, only when asked:

- ``t_end``: TimeMLP(t_end - t). A two-time network u(z, t, t_end) (an average velocity) embeds the start
  and the interval; called with one time it sees an interval of zero, its instantaneous velocity.
- labels (``classes`` > 0): a learned class embedding (Ho & Salimans 2022); index ``classes`` is the
  null class, the unconditional model trained by label dropout, and what ``cond=None`` means.
- ``guidance``: TimeMLP(w / 4) of a guidance weight w, zero-initialised, so that a network started from
  one without it is that network (Meng et al. 2023); without w it sees w = 1.

A network without any of them is the backbone itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowkit.errors import ConfigError
from flowkit.models.embeddings import TimeMLP, zeroed


class Conditioned(nn.Module):
    """``net(x, t, t_end=None, cond=None, w=None) = backbone(x, t, emb)``, emb the sum of the inputs' embeddings."""

    def __init__(self, backbone: nn.Module, inputs: tuple[str, ...] = (), classes: int = 0) -> None:
        super().__init__()
        for attr in ("emb_dim", "time_dim", "time_scale"):
            if not hasattr(backbone, attr):
                raise ConfigError(f"model '{type(backbone).__name__}' declares no {attr}: it cannot take the inputs "
                                  f"{', '.join([*inputs, *(['labels'] if classes else [])])}")
        if classes < 0:
            raise ConfigError(f"classes={classes} is out of range; expected >= 0")
        dim, features, scale = backbone.emb_dim, backbone.time_dim, backbone.time_scale
        self.backbone = backbone
        self.inputs = frozenset(inputs) | ({"labels"} if classes else frozenset())
        self.num_classes = classes
        self.interval = TimeMLP(features, dim, scale) if "t_end" in inputs else None
        self.classes = nn.Embedding(classes + 1, dim) if classes else None
        self.guidance = TimeMLP(features, dim, scale) if "guidance" in inputs else None
        if self.guidance is not None:
            zeroed(self.guidance[-1])

    def forward(self, x: Tensor, t: Tensor, t_end: Tensor | None = None, cond: Tensor | None = None,
                w: Tensor | None = None) -> Tensor:
        parts = []
        if self.interval is not None:
            parts.append(self.interval(torch.zeros_like(t) if t_end is None else t_end - t))
        elif t_end is not None:
            raise TypeError("this network takes one time; its method declares no 't_end' input")
        if self.classes is not None:
            parts.append(self.classes(torch.full_like(t, self.num_classes, dtype=torch.long) if cond is None else cond))
        elif cond is not None:
            raise TypeError("this network takes no class label; train it with cond.labels=true")
        if self.guidance is not None:
            parts.append(self.guidance((torch.ones_like(t) if w is None else w) / 4))
        elif w is not None:
            raise TypeError("this network takes no guidance weight; its method declares no 'guidance' input")
        return self.backbone(x, t, sum(parts[1:], parts[0]) if parts else None)

    def neutral(self) -> tuple[str, ...]:
        """State-dict prefixes of inputs that start without effect: a network may be started without them."""
        return ("guidance.",) if self.guidance is not None else ()


def compose(backbone: nn.Module, inputs: tuple[str, ...] = (), classes: int = 0) -> nn.Module:
    """The backbone itself, or ``Conditioned`` when a method or the run's labels ask for more inputs."""
    return Conditioned(backbone, inputs, classes) if inputs or classes else backbone


def network_inputs(net: Any) -> frozenset[str]:
    """What ``net`` takes besides (x, t): some of t_end, labels, guidance (a bare backbone: none)."""
    return getattr(net, "inputs", frozenset())


def load_into(net: nn.Module, weights: dict[str, Tensor], source: str) -> None:
    """Start ``net`` from ``weights`` of another run: a backbone's weights fit a composed network's backbone,
    and inputs that start without effect (a guidance weight) may be missing; anything else must match."""
    neutral: tuple[str, ...] = ()
    if isinstance(net, Conditioned):
        neutral = net.neutral()
        if not any(k.startswith("backbone.") for k in weights):
            weights = {f"backbone.{k}": v for k, v in weights.items()}
    try:
        missing, unexpected = net.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        first = lines[1].strip() if len(lines) > 1 else str(exc)
        raise ConfigError(f"model.init_from='{source}': its network does not fit this model ({first})") from None
    missing = [k for k in missing if not k.startswith(neutral)] if neutral else missing
    if missing or unexpected:
        raise ConfigError(f"model.init_from='{source}': its network does not fit this model "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
