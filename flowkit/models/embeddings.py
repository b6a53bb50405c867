"""Time embeddings shared by the backbones and by the inputs composed onto them (``network.py``)."""

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
        if dim < 2 or dim % 2:
            raise ValueError(f"time_dim={dim} is out of range; expected an even number >= 2")
        if not scale > 0:
            raise ValueError(f"time_scale={scale} is out of range; expected > 0")
        freqs = torch.exp(-math.log(max_period) * torch.arange(dim // 2) / (dim // 2))
        self.register_buffer("freqs", freqs * scale, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        angles = t.to(self.freqs.dtype)[:, None] * self.freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TimeMLP(nn.Sequential):
    """Sinusoidal features -> two-layer MLP, the conditioning vector of a block."""

    def __init__(self, dim: int, out: int, scale: float = 1000.0) -> None:
        super().__init__(SinusoidalEmbedding(dim, scale=scale), nn.Linear(dim, out), nn.SiLU(), nn.Linear(out, out))


def zeroed(layer: nn.Module) -> nn.Module:
    """``layer`` with weight and bias 0: an output, gate or modulation that starts switched off."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def conditioning(time: nn.Module, t: Tensor, emb: Tensor | None, dtype: torch.dtype) -> Tensor:
    """A backbone's conditioning vector: its time embedding of ``t``, plus ``emb`` (the embedding of the inputs
    composed onto it: labels, an end time, a guidance weight) when given, in ``dtype``."""
    c = time(t)
    return (c if emb is None else c + emb).to(dtype)
