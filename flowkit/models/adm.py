"""An attention UNet in the ADM / DDPM++ style (Dhariwal & Nichol 2021; Song et al. 2021).

Residual blocks: GroupNorm, SiLU, 3x3 conv, then GroupNorm modulated by the conditioning vector (scale-shift,
"AdaGN": norm(h) (1 + s) + b), SiLU, dropout and a 3x3 conv that starts at 0; ``blocks`` of them per level,
self-attention (``heads`` heads) after each block at the resolutions in ``attn_resolutions`` and in the
middle; downsampling by a stride-2 conv, upsampling by nearest + conv, skip connections from every block.
The conditioning vector is the time's sinusoidal features through a two-layer MLP, plus ``emb`` (labels, an
end time, a guidance weight) composed by flowkit.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from flowkit.models.attention import SelfAttention
from flowkit.models.embeddings import TimeMLP, conditioning, zeroed
from flowkit.models.registry import MAX_DEPTH, register_model


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 32 groups of at least 4 channels (32 for the usual widths), dividing ``channels``."""
    groups = max(g for g in range(1, 33) if channels % g == 0 and (g == 1 or channels // g >= 4))
    return nn.GroupNorm(groups, channels)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * c_out))
        self.norm = _norm(c_out)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), zeroed(nn.Conv2d(c_out, c_out, 3, padding=1)))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        scale, shift = rearrange(self.emb(emb), "b (two c) -> two b c 1 1", two=2)
        h = self.norm(self.in_layers(x)) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """GroupNorm, then self-attention over the H x W positions, added back."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.attention = SelfAttention(channels, heads, zero_init=True)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(self.norm(x), "b c h w -> b (h w) c")
        return x + rearrange(self.attention(tokens), "b (h w) c -> b c h w", h=h, w=w)


class Level(nn.Module):
    """A residual block, with attention after it where the resolution asks for it."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, heads: int, attend: bool) -> None:
        super().__init__()
        self.block = ResBlock(c_in, c_out, emb_dim, dropout)
        self.attention = AttentionBlock(c_out, heads) if attend else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.attention(self.block(x, emb))


@register_model("adm")
class ADMUNet(nn.Module):
    """Attention UNet (ADM / DDPM++): ``blocks`` scale-shift residual blocks per level of width channels x mults,
    self-attention at ``attn_resolutions`` (sides of the square feature maps), dropout; any number of channels
    (pixels or latent codes); square images whose side divides by 2^(len(mults) - 1)."""

    def __init__(self, data_shape: tuple[int, ...], channels: int = 128, mults: tuple[int, ...] = (1, 2, 2, 2),
                 blocks: int = 2, attn_resolutions: tuple[int, ...] = (16,), heads: int = 4, dropout: float = 0.1,
                 time_dim: int = 128, time_scale: float = 1000.0) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ValueError(f"adm needs image data (C, H, W); got data shape {tuple(data_shape)}")
        if channels < 1 or not 1 <= blocks <= MAX_DEPTH or not mults or min(mults) < 1:
            raise ValueError(f"channels={channels}, blocks={blocks}, mults={tuple(mults)} are out of range; expected "
                             f"channels >= 1, blocks in [1, {MAX_DEPTH}] and mults of whole numbers >= 1")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout={dropout} is out of range; expected 0 <= dropout < 1")
        c, h, w = data_shape
        if h != w:
            raise ValueError(f"adm takes square images (attn_resolutions name the side of a level); the data is "
                             f"{h}x{w}: crop it square (data.resolution) or use model=unet or model=dit, which take any HxW")
        factor = 2 ** (len(mults) - 1)
        if h % factor or w % factor:
            raise ValueError(f"image size {h}x{w} does not divide by {factor} (mults={tuple(mults)})")
        for width in {channels * m for m in mults}:
            if width % heads:
                raise ValueError(f"heads={heads} must divide every level's width (channels x mults: {width})")
        emb_dim = 4 * channels
        self.emb_dim, self.time_dim, self.time_scale = emb_dim, time_dim, time_scale
        self.time = TimeMLP(time_dim, emb_dim, time_scale)
        self.stem = nn.Conv2d(c, channels, 3, padding=1)
        attend = set(attn_resolutions)
        self.down, skips, prev, size = nn.ModuleList(), [channels], channels, h
        for i, mult in enumerate(mults):
            for _ in range(blocks):
                self.down.append(Level(prev, channels * mult, emb_dim, dropout, heads, size in attend))
                prev = channels * mult
                skips.append(prev)
            if i < len(mults) - 1:
                self.down.append(nn.Conv2d(prev, prev, 3, stride=2, padding=1))
                skips.append(prev)
                size //= 2
        self.mid = nn.ModuleList([ResBlock(prev, prev, emb_dim, dropout), AttentionBlock(prev, heads),
                                  ResBlock(prev, prev, emb_dim, dropout)])
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(mults))):
            for j in range(blocks + 1):
                self.up.append(Level(prev + skips.pop(), channels * mult, emb_dim, dropout, heads, size in attend))
                prev = channels * mult
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                             nn.Conv2d(prev, prev, 3, padding=1)))
                size *= 2
        self.out = nn.Sequential(_norm(prev), nn.SiLU(), zeroed(nn.Conv2d(prev, c, 3, padding=1)))

    def forward(self, x: Tensor, t: Tensor, emb: Tensor | None = None) -> Tensor:
        emb = conditioning(self.time, t, emb, x.dtype)
        h = self.stem(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Level) else layer(h)
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1), emb) if isinstance(layer, Level) else layer(h)
        return self.out(h)
