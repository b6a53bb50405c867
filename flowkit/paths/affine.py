"""Closed-form affine paths: rectified, CondOT and cosine."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.paths.base import AffinePath, register_path


@register_path("rectified")
class Rectified(AffinePath):
    """Straight line (Liu et al. 2022; SD3 "rf"): alpha = t, sigma = 1 - t."""

    def alpha(self, t: Tensor) -> Tensor:
        return t

    def sigma(self, t: Tensor) -> Tensor:
        return 1 - t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)


@register_path("ot")
class CondOT(AffinePath):
    """CondOT path (Lipman et al. 2023, eq. 20): alpha = t, sigma = 1 - (1 - sigma_min) t."""

    def __init__(self, sigma_min: float = 0.0) -> None:
        if not 0.0 <= sigma_min < 1.0:
            raise ValueError(f"sigma_min={sigma_min} is out of range; expected 0 <= sigma_min < 1")
        self.sigma_min = sigma_min

    def alpha(self, t: Tensor) -> Tensor:
        return t

    def sigma(self, t: Tensor) -> Tensor:
        return 1 - (1 - self.sigma_min) * t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return torch.full_like(t, -(1 - self.sigma_min))


@register_path("cosine")
class Cosine(AffinePath):
    """Trigonometric path (SD3 "cosine"): alpha = sin(pi t / 2), sigma = cos(pi t / 2)."""

    def alpha(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * t)

    def sigma(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * (1 - t))  # = cos(pi t / 2), but exactly 0 at t = 1

    def d_alpha(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)
