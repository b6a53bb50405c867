"""The classifier's network: (x_t, t) -> logits, time-conditioned throughout."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flowkit.models.embeddings import TimeMLP


class _Block(nn.Module):
    """GroupNorm -> scale-shift by the time embedding -> SiLU -> 3x3 conv, with a residual connection."""

    def __init__(self, channels: int, emb: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(min(8, channels), channels)
        self.film = nn.Linear(emb, 2 * channels)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        return h + self.conv(nn.functional.silu(self.norm(h) * (1 + scale) + shift))


class NoisyClassifierNet(nn.Module):
    """Logits over ``classes`` of (x_t, t): an MLP on [x, emb(t)] for vectors; for images (C, H, W), residual
    conv blocks with time scale-shift, halving the resolution down to 4 x 4 or less, then mean pooling."""

    def __init__(self, data_shape: tuple[int, ...], classes: int, width: int = 128, depth: int = 3,
                 time_dim: int = 64, time_scale: float = 1000.0) -> None:
        super().__init__()
        if classes < 2:
            raise ValueError(f"classes={classes}: a classifier needs a labelled target with >= 2 classes "
                             f"(cond.labels=true)")
        if width < 1 or depth < 1:
            raise ValueError(f"width={width}, depth={depth} are out of range; expected both >= 1")
        self.data_shape, self.classes = tuple(data_shape), classes
        self.time = TimeMLP(time_dim, width, time_scale)
        if len(self.data_shape) == 3:
            channels, size = self.data_shape[0], min(self.data_shape[1:])
            self.stem = nn.Conv2d(channels, width, 3, padding=1)
            self.blocks = nn.ModuleList(_Block(width, width) for _ in range(depth))
            self.downsample_after = max(0, math.ceil(math.log2(size / 4)))  # 8x8 -> 4x4: one halving
            self.head = nn.Sequential(nn.GroupNorm(min(8, width), width), nn.SiLU())
            self.out = nn.Linear(width, classes)
        else:
            dim = math.prod(self.data_shape)
            layers: list[nn.Module] = [nn.Linear(dim + width, width), nn.SiLU()]
            for _ in range(depth - 1):
                layers += [nn.Linear(width, width), nn.SiLU()]
            self.mlp = nn.Sequential(*layers)
            self.out = nn.Linear(width, classes)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        emb = self.time(t)
        if len(self.data_shape) != 3:
            return self.out(self.mlp(torch.cat([x.flatten(1), emb.to(x.dtype)], dim=1)))
        h = self.stem(x)
        for index, block in enumerate(self.blocks):
            h = block(h, emb)
            if index < self.downsample_after:
                h = nn.functional.avg_pool2d(h, 2)
        return self.out(self.head(h).mean(dim=(2, 3)))
