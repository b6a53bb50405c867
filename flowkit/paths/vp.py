"""Variance-preserving diffusion path (Song et al. 2021, VP SDE; linear beta schedule).

In diffusion time s (s=0 data, s=1 noise) the VP SDE with beta(s) = beta_min + (beta_max - beta_min) s
has mean coefficient exp(-T(s)/2), T(s) = beta_min s + (beta_max - beta_min) s^2 / 2. In our time
(t = 1 - s, t=1 data):

    alpha(t) = exp(-T(1 - t) / 2),  sigma(t) = sqrt(1 - alpha(t)^2)
    alpha'(t) = alpha(t) * beta(1 - t) / 2,  sigma'(t) = -alpha(t) alpha'(t) / sigma(t)

alpha(0) = exp(-T(1)/2) is not exactly 0 (about 6.6e-3 for the defaults), and sigma'(t) diverges as
t -> 1: time samplers draw t in the open interval, and samplers only ever see the model's velocity.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.paths.base import AffinePath, register_path


@register_path("vp")
class VP(AffinePath):
    """VP diffusion (Song et al. 2021): alpha = exp(-T(1-t)/2), sigma = sqrt(1 - alpha^2), linear beta."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        if not 0.0 < beta_min <= beta_max:
            raise ValueError(
                f"beta_min={beta_min}, beta_max={beta_max} are out of range; expected 0 < beta_min <= beta_max"
            )
        self.beta_min = beta_min
        self.beta_max = beta_max

    def _T(self, s: Tensor) -> Tensor:
        return self.beta_min * s + 0.5 * (self.beta_max - self.beta_min) * s**2

    def _beta(self, s: Tensor) -> Tensor:
        return self.beta_min + (self.beta_max - self.beta_min) * s

    def alpha(self, t: Tensor) -> Tensor:
        return torch.exp(-0.5 * self._T(1 - t))

    def sigma(self, t: Tensor) -> Tensor:
        # 1 - exp(-T) through expm1 keeps precision as t -> 1, where sigma -> 0.
        return torch.sqrt(-torch.expm1(-self._T(1 - t)))

    def d_alpha(self, t: Tensor) -> Tensor:
        return 0.5 * self._beta(1 - t) * self.alpha(t)

    def d_sigma(self, t: Tensor) -> Tensor:
        return -self.alpha(t) * self.d_alpha(t) / self.sigma(t)
