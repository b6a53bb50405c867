"""Training-time samplers for t in (0, 1) (Esser et al. 2024, "Scaling Rectified Flow Transformers", §3.1).

SD3 writes t for the *noise* level; ours is the data level, t_ours = 1 - t_sd3. For ``mode`` and
``cosmap`` the density is symmetric under t -> 1 - t, so the formulas carry over unchanged; for
``logit_normal`` the sign of the mean flips: SD3's logit-normal(m, s) is ours with mean -m.
A sampler is called as ``sampler(n, device)`` and returns a (n,) float tensor.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.registry import Registry

TIME_SAMPLERS: Registry = Registry("time sampler", "flowkit.timesteps")
register_time_sampler = TIME_SAMPLERS.register


@register_time_sampler("uniform")
class Uniform:
    """t ~ U(0, 1)."""

    def __call__(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.rand(n, device=device)


@register_time_sampler("logit_normal")
class LogitNormal:
    """logit(t) ~ N(m, s^2), i.e. t = sigmoid(m + s z), z ~ N(0, 1). m > 0 favours the data end."""

    def __init__(self, m: float = 0.0, s: float = 1.0) -> None:
        if not s > 0:
            raise ValueError(f"s={s} is out of range; expected s > 0")
        self.m, self.s = m, s

    def __call__(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.sigmoid(self.m + self.s * torch.randn(n, device=device))


@register_time_sampler("mode")
class Mode:
    """Mode sampling with heavy tails: t = 1 - u - s (cos^2(pi u / 2) - 1 + u), u ~ U(0, 1).

    s > 0 concentrates on the middle of the path, s < 0 on its ends; t is monotone in u only for
    -1 <= s <= 2 / (pi - 2).
    """

    def __init__(self, s: float = 1.29) -> None:
        upper = 2 / (math.pi - 2)
        if not -1.0 <= s <= upper:
            raise ValueError(f"s={s} is out of range; expected -1 <= s <= {upper:.4f}")
        self.s = s

    def __call__(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        u = torch.rand(n, device=device)
        return 1 - u - self.s * (torch.cos(0.5 * math.pi * u) ** 2 - 1 + u)


@register_time_sampler("cosmap")
class CosMap:
    """CosMap: t = 1 - 1 / (tan(pi u / 2) + 1), u ~ U(0, 1) (the cosine path's rf-equivalent density)."""

    def __call__(self, n: int, device: torch.device | str = "cpu") -> Tensor:
        u = torch.rand(n, device=device)
        return 1 - 1 / (torch.tan(0.5 * math.pi * u) + 1)
