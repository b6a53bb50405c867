"""Multi-head self-attention over tokens, shared by the attention UNet (``adm``) and the DiT (``dit``).

PyTorch's fused attention kernels have no forward-mode derivative, so ``torch.func.jvp`` (a method whose target
is a time derivative of the network) cannot pass through them. Inside ``jvp_safe_attention()`` the attention runs on the math kernel,
which has one: wrap a jvp of a network with attention in it (methods that take jvps do).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

from flowkit.models.embeddings import zeroed


class SelfAttention(nn.Module):
    """softmax(Q K^T / sqrt(d)) V over ``heads`` heads of tokens (batch, n, dim); the output projection starts at 0
    when ``zero_init`` (a residual branch that begins as the identity)."""

    def __init__(self, dim: int, heads: int, zero_init: bool = False) -> None:
        super().__init__()
        if heads < 1 or dim % heads:
            raise ValueError(f"heads={heads} must divide the width {dim}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = zeroed(nn.Linear(dim, dim)) if zero_init else nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        return self.proj(rearrange(F.scaled_dot_product_attention(q, k, v), "b h n d -> b n (h d)"))


@contextlib.contextmanager
def jvp_safe_attention() -> Iterator[None]:
    """Attention on the math kernel (forward-mode differentiable) inside the block."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield
