"""DiT (Peebles & Xie 2023): a transformer on image patches, conditioned by adaLN-Zero.

x (C, H, W) -> ``patch`` x ``patch`` patches -> tokens of width ``hidden`` (+ a position embedding: the fixed
2-D sin-cos one, or ``pos=learned``) -> ``depth`` blocks -> a final adaptive LayerNorm and linear layer ->
patches -> (C, H, W). Each block is attention and an MLP (``mlp_ratio`` x wider), each behind a LayerNorm
without parameters whose shift and scale, and the residual branch's gate, come from the conditioning vector
(time features through an MLP, plus ``emb`` composed by flowkit: labels, an end time, a guidance weight). The
gates and the final layer start at 0 ("-Zero"): the network starts as the zero function.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from flowkit.models.attention import SelfAttention
from flowkit.models.embeddings import TimeMLP, conditioning, zeroed
from flowkit.models.registry import MAX_DEPTH, register_model


def sincos_2d(hidden: int, rows: int, cols: int) -> Tensor:
    """The fixed 2-D sin-cos position embedding (half the features for the row, half for the column)."""
    if hidden % 4:
        raise ValueError(f"hidden={hidden} must divide by 4 for the 2-D sin-cos position embedding")
    quarter = hidden // 4
    omega = 1.0 / 10_000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64),
                          indexing="ij")
    parts = [f(pos.reshape(-1, 1) * omega) for pos in (r, c) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, dim=1).float()


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attention = SelfAttention(hidden, heads)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden))
        self.ada = nn.Sequential(nn.SiLU(), zeroed(nn.Linear(hidden, 6 * hidden)))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)
        x = x + gate1[:, None] * self.attention(_modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


@register_model("dit")
class DiT(nn.Module):
    """Diffusion transformer with adaLN-Zero: ``depth`` blocks of width ``hidden`` and ``heads`` heads on
    ``patch`` x ``patch`` patches; ``pos`` sincos (fixed) or learned. H and W must divide by ``patch``."""

    def __init__(self, data_shape: tuple[int, ...], hidden: int = 384, depth: int = 12, heads: int = 6,
                 patch: int = 2, mlp_ratio: float = 4.0, pos: str = "sincos", time_dim: int = 256,
                 time_scale: float = 1000.0) -> None:
        super().__init__()
        if len(data_shape) != 3:
            raise ValueError(f"dit needs image data (C, H, W); got data shape {tuple(data_shape)}")
        c, h, w = data_shape
        if patch < 1 or h % patch or w % patch:
            raise ValueError(f"patch={patch}: the image size {h}x{w} must divide by it")
        if not 1 <= depth <= MAX_DEPTH or hidden < 1 or mlp_ratio <= 0:
            raise ValueError(f"depth={depth}, hidden={hidden}, mlp_ratio={mlp_ratio} are out of range; expected in "
                             f"[1, {MAX_DEPTH}], >= 1 and > 0")
        if pos not in ("sincos", "learned"):
            raise ValueError(f"pos='{pos}' is not one of: sincos, learned")
        self.data_shape, self.patch = tuple(data_shape), patch
        self.emb_dim, self.time_dim, self.time_scale = hidden, time_dim, time_scale
        self.time = TimeMLP(time_dim, hidden, time_scale)
        self.embed = nn.Conv2d(c, hidden, patch, stride=patch)
        rows, cols = h // patch, w // patch
        if pos == "learned":
            self.pos = nn.Parameter(torch.randn(1, rows * cols, hidden) * 0.02)
        else:
            self.register_buffer("pos", sincos_2d(hidden, rows, cols)[None], persistent=False)
        self.blocks = nn.ModuleList(Block(hidden, heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), zeroed(nn.Linear(hidden, 2 * hidden)))
        self.final = zeroed(nn.Linear(hidden, patch * patch * c))
        bound = math.sqrt(6 / (c * patch * patch + hidden))  # the patch embedding as a linear layer (Xavier)
        nn.init.uniform_(self.embed.weight.view(hidden, -1), -bound, bound)

    def forward(self, x: Tensor, t: Tensor, emb: Tensor | None = None) -> Tensor:
        c = conditioning(self.time, t, emb, x.dtype)
        tokens = rearrange(self.embed(x), "b d r c -> b (r c) d") + self.pos.to(x.dtype)
        for block in self.blocks:
            tokens = block(tokens, c)
        shift, scale = self.final_ada(c).chunk(2, dim=1)
        patches = self.final(_modulate(self.final_norm(tokens), shift, scale))
        _, h, w = self.data_shape
        return rearrange(patches, "b (r c) (p q ch) -> b ch (r p) (c q)", r=h // self.patch, p=self.patch,
                         q=self.patch)
