"""Time embeddings shared by the models."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SinusoidalEmbedding(nn.Module):
    """Transformer-style features of t in [0, 1] (Vaswani et al. 2017; DDPM's time embedding).

    emb(t) = [sin(s t w_k), cos(s t w_k)], w_k = max_period^(-k / (dim/2)), with s = 1000 so the
    lowest frequencies still resolve small changes of t.
    """

    def __init__(self, dim: int, max_period: float = 10_000.0, scale: float = 1000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"time embedding dim={dim} must be even")
        freqs = torch.exp(-math.log(max_period) * torch.arange(dim // 2) / (dim // 2))
        self.register_buffer("freqs", freqs * scale, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        angles = t.to(self.freqs.dtype)[:, None] * self.freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimeMLP(nn.Sequential):
    """Sinusoidal features -> two-layer MLP, the conditioning vector of a block."""

    def __init__(self, dim: int, out: int, scale: float = 1000.0) -> None:
        super().__init__(SinusoidalEmbedding(dim, scale=scale), nn.Linear(dim, out), nn.SiLU(), nn.Linear(out, out))


class TimeConditioning(nn.Module):
    """The conditioning vector of a network: ``TimeMLP(t)``, plus

    - ``TimeMLP(t_end - t)`` when the network takes two times (``times=2``: MeanFlow's average velocity
      u(z, r, t) embeds (r, t - r), Geng et al. 2025 §4.3). A two-time network called with one time
      sees t_end = t: an interval of zero, its instantaneous velocity, so ODE solvers use it unchanged.
    - a learned class embedding when the network is class-conditional (``num_classes > 0``), added to
      the time embedding (Ho & Salimans 2022). Index ``num_classes`` is the null class: the
      unconditional model trained by label dropout, and what ``cond=None`` means.
    - ``TimeMLP(w / 4)`` of a guidance weight w when the network takes one (``guidance_input``: the
      w-conditioned student of guided distillation, Meng et al. 2023); without w it sees w = 1.
    """

    def __init__(self, dim: int, out: int, times: int = 1, scale: float = 1000.0, num_classes: int = 0,
                 guidance_input: bool = False) -> None:
        super().__init__()
        if times not in (1, 2):
            raise ValueError(f"times={times} is out of range; expected 1 (velocity) or 2 (start and end time)")
        if not scale > 0:
            raise ValueError(f"time_scale={scale} is out of range; expected > 0")
        if num_classes < 0:
            raise ValueError(f"num_classes={num_classes} is out of range; expected >= 0")
        self.time = TimeMLP(dim, out, scale)
        self.interval = TimeMLP(dim, out, scale) if times == 2 else None
        self.num_classes = num_classes
        self.classes = nn.Embedding(num_classes + 1, out) if num_classes else None
        self.guidance = TimeMLP(dim, out, scale) if guidance_input else None
        if self.guidance is not None:  # starts without effect: a student initialised from its teacher is the teacher
            nn.init.zeros_(self.guidance[-1].weight)
            nn.init.zeros_(self.guidance[-1].bias)

    def forward(self, t: Tensor, t_end: Tensor | None = None, cond: Tensor | None = None,
                w: Tensor | None = None) -> Tensor:
        emb = self.time(t)
        if self.interval is not None:
            emb = emb + self.interval(torch.zeros_like(t) if t_end is None else t_end - t)
        elif t_end is not None:
            raise TypeError("this network takes one time; build it with times=2 to pass an end time")
        if self.classes is not None:
            emb = emb + self.classes(torch.full_like(t, self.num_classes, dtype=torch.long) if cond is None else cond)
        elif cond is not None:
            raise TypeError("this network takes no class label; train it with cond.labels=true")
        if self.guidance is not None:
            emb = emb + self.guidance((torch.ones_like(t) if w is None else w) / 4)
        elif w is not None:
            raise TypeError("this network takes no guidance weight; build it with guidance_input=true")
        return emb
