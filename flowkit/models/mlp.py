"""MLP velocity field for low-dimensional data."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from flowkit.models.embeddings import TimeMLP, conditioning
from flowkit.models.registry import MAX_DEPTH, register_model


@register_model("mlp")
class MLP(nn.Module):
    """v(x, t) = MLP([flatten(x), emb(t)]): ``depth`` hidden layers of ``width`` with SiLU.

    emb(t) is a sinusoidal embedding of ``time_dim`` features through a two-layer MLP; ``emb``, a vector of
    ``emb_dim = time_dim`` composed by flowkit (labels, an end time, a guidance weight), adds to it.
    """

    def __init__(self, data_shape: tuple[int, ...], width: int = 256, depth: int = 3, time_dim: int = 64,
                 time_scale: float = 1000.0) -> None:
        super().__init__()
        if width < 1 or not 1 <= depth <= MAX_DEPTH:  # a deeper net takes minutes just to count its parameters
            raise ValueError(f"width={width}, depth={depth} are out of range; expected width >= 1 and depth in "
                             f"[1, {MAX_DEPTH}]")
        self.data_shape = tuple(data_shape)
        self.emb_dim, self.time_dim, self.time_scale = time_dim, time_dim, time_scale
        dim = math.prod(self.data_shape)
        self.time = TimeMLP(time_dim, time_dim, time_scale)
        layers: list[nn.Module] = [nn.Linear(dim + time_dim, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, emb: Tensor | None = None) -> Tensor:
        h = rearrange(x, "b ... -> b (...)")
        h = self.net(torch.cat([h, conditioning(self.time, t, emb, h.dtype)], dim=1))
        return h.reshape(x.shape)
