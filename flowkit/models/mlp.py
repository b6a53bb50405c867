"""MLP velocity field for low-dimensional data."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from flowkit.models.embeddings import TimeConditioning
from flowkit.models.registry import register_model


@register_model("mlp")
class MLP(nn.Module):
    """v(x, t) = MLP([flatten(x), emb(t)]): ``depth`` hidden layers of ``width`` with SiLU.

    ``times=2`` adds an end time, ``model(x, t, t_end)``; ``num_classes`` a class label,
    ``model(x, t, cond=y)``; ``guidance_input`` a guidance weight, ``model(x, t, cond=y, w=w)``
    (see ``TimeConditioning``).
    """

    def __init__(self, data_shape: tuple[int, ...], width: int = 256, depth: int = 3, time_dim: int = 64,
                 times: int = 1, time_scale: float = 1000.0, num_classes: int = 0,
                 guidance_input: bool = False) -> None:
        super().__init__()
        if width < 1 or depth < 1:
            raise ValueError(f"width={width}, depth={depth} are out of range; expected both >= 1")
        self.data_shape = tuple(data_shape)
        dim = math.prod(self.data_shape)
        self.num_classes = num_classes  # > 0: class-conditional, label num_classes is the null class
        self.guidance_input = guidance_input  # takes w (guided distillation); see conditioning.guided
        self.time = TimeConditioning(time_dim, time_dim, times, time_scale, num_classes, guidance_input)
        layers: list[nn.Module] = [nn.Linear(dim + time_dim, width), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, t_end: Tensor | None = None, cond: Tensor | None = None,
                w: Tensor | None = None) -> Tensor:
        h = rearrange(x, "b ... -> b (...)")
        h = self.net(torch.cat([h, self.time(t, t_end, cond, w).to(h.dtype)], dim=1))
        return h.reshape(x.shape)
