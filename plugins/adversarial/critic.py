"""Small critics trained from scratch (no pretrained feature network): an MLP for vector data, a conv
net for images. With labels, a projection critic (Miyato & Koyama 2018): D(x, y) = w.h(x) + e_y.h(x),
where e_y is a learned class embedding and the null class (labels dropped) has one too."""

from __future__ import annotations

import math

from einops import rearrange
from torch import Tensor, nn


class Critic(nn.Module):
    """D(x, y) = head(h(x)) + <embed(y), h(x)>; ``features`` maps x to h of size ``width``."""

    def __init__(self, features: nn.Module, width: int, classes: int) -> None:
        super().__init__()
        self.features, self.head = features, nn.Linear(width, 1)
        self.embed = nn.Embedding(classes + 1, width) if classes else None

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = self.features(x)
        out = self.head(h).squeeze(1)
        if self.embed is not None and cond is not None:
            out = out + (self.embed(cond) * h).sum(1)
        return out


def mlp_features(dim: int, width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers += [nn.Linear(dim if i == 0 else width, width), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


def conv_features(channels: int, width: int, depth: int) -> nn.Module:
    """``depth`` stride-2 3x3 convolutions doubling the channels from width/2**(depth-1), then a global
    sum over positions (any image size)."""
    layers: list[nn.Module] = []
    c_in = channels
    for i in range(depth):
        c_out = width // 2 ** (depth - 1 - i)
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2 if i else 1, padding=1), nn.LeakyReLU(0.2)]
        c_in = c_out
    return nn.Sequential(*layers, _SumPool())


class _SumPool(nn.Module):
    def forward(self, h: Tensor) -> Tensor:
        return rearrange(h, "b c h w -> b c (h w)").sum(-1)


def make_critic(data_shape: tuple[int, ...], classes: int, width: int, depth: int) -> Critic:
    """An MLP critic for (d,) data, a conv critic for (channels, height, width) images."""
    if width < 1 or depth < 1:
        raise ValueError(f"critic_width={width}, critic_depth={depth}; expected both >= 1")
    if len(data_shape) == 3:
        return Critic(conv_features(data_shape[0], width, depth), width, classes)
    return Critic(mlp_features(math.prod(data_shape), width, depth), width, classes)
