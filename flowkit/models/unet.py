"""A small UNet for 8x8 and 28x28 images (Ronneberger et al. 2015; the DDPM variant of Ho et al. 2020).

Residual blocks with GroupNorm and an additive time embedding, downsampling by space-to-depth
(einops), nearest upsampling, no attention (so ``torch.func.jvp`` works through it on any device).
"""

from __future__ import annotations

from einops import rearrange
import torch
from torch import Tensor, nn

from flowkit.models.embeddings import TimeMLP, conditioning, zeroed
from flowkit.models.registry import register_model


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb = nn.Linear(emb_dim, c_out)
        self.out_layers = nn.Sequential(_norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x) + rearrange(self.emb(emb), "b c -> b c 1 1")
        return self.skip(x) + self.out_layers(h)


class Downsample(nn.Module):
    """Space-to-depth 2x2 then a 1x1 conv: halves H and W without discarding pixels."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(4 * channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(rearrange(x, "b c (h p1) (w p2) -> b (c p1 p2) h w", p1=2, p2=2))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2.0, mode="nearest"))


@register_model("unet")
class UNet(nn.Module):
    """v(x, t) for x of shape (batch, C, H, W); H and W must divide by 2^(len(mults) - 1).

    The conditioning vector of every block is a sinusoidal embedding of ``time_dim`` features through a
    two-layer MLP to ``emb_dim = 4 * channels``; ``emb`` (composed by flowkit) adds to it.
    """

    def __init__(
        self, data_shape: tuple[int, ...], channels: int = 64, mults: tuple[int, ...] = (1, 2, 2), time_dim: int = 128,
        time_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ValueError(f"unet needs image data (C, H, W); got data shape {tuple(data_shape)}")
        c, h, w = data_shape
        factor = 2 ** (len(mults) - 1)
        if h % factor or w % factor:
            raise ValueError(f"image size {h}x{w} does not divide by {factor} (mults={tuple(mults)})")
        emb_dim = 4 * channels
        self.emb_dim, self.time_dim, self.time_scale = emb_dim, time_dim, time_scale
        self.time = TimeMLP(time_dim, emb_dim, time_scale)
        self.stem = nn.Conv2d(c, channels, 3, padding=1)
        widths = [channels * m for m in mults]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = channels
        for i, width in enumerate(widths):
            self.down.append(ResBlock(prev, width, emb_dim))
            self.downsample.append(Downsample(width) if i < len(widths) - 1 else nn.Identity())
            prev = width
        self.mid = ResBlock(prev, prev, emb_dim)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            self.up.append(ResBlock(prev + width, width, emb_dim))
            self.upsample.append(Upsample(width) if i > 0 else nn.Identity())
            prev = width
        self.out = nn.Sequential(_norm(prev), nn.SiLU(), zeroed(nn.Conv2d(prev, c, 3, padding=1)))

    def forward(self, x: Tensor, t: Tensor, emb: Tensor | None = None) -> Tensor:
        emb = conditioning(self.time, t, emb, x.dtype)
        h = self.stem(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid(h, emb)
        for block, up in zip(self.up, self.upsample):
            h = up(block(torch.cat([h, skips.pop()], dim=1), emb))
        return self.out(h)
