"""The affine probability path and every conversion between parameterisations.

Convention (README): t=0 is the source (noise), t=1 the data, and

    x_t = alpha(t) * x1 + sigma(t) * x0,        alpha(0)=0, alpha(1)=1, sigma(0)=1, sigma(1)=0
    u_t = alpha'(t) * x1 + sigma'(t) * x0       (the conditional velocity)

A network may predict the velocity v, the data x1, the source x0, or the score of p_t. Given x_t,
any one of them fixes the pair (x0_hat, x1_hat) through the two linear equations above, and every
other parameterisation follows from that pair; ``convert`` is the single place this happens.
The score form assumes a standard Gaussian source (Tweedie): score = -E[x0 | x_t] / sigma(t).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from flowkit.registry import Registry

PATHS: Registry[type[AffinePath]] = Registry("path", "flowkit.paths")
register_path = PATHS.register

PREDICTIONS = ("velocity", "x1", "x0", "score")


def expand_like(t: Tensor, x: Tensor) -> Tensor:
    """(batch,) time -> (batch, 1, ..., 1) so it broadcasts against x of shape (batch, *data)."""
    return t.reshape(t.shape[0], *([1] * (x.dim() - 1)))


class AffinePath(ABC):
    """x_t = alpha(t) x1 + sigma(t) x0; subclasses give alpha, sigma and their derivatives in closed form."""

    @abstractmethod
    def alpha(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def sigma(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def d_alpha(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def d_sigma(self, t: Tensor) -> Tensor: ...

    def _coefficients(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        t = expand_like(t, x)
        return self.alpha(t), self.sigma(t), self.d_alpha(t), self.d_sigma(t)

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """x_t = alpha(t) x1 + sigma(t) x0."""
        a, s, _, _ = self._coefficients(t, x1)
        return a * x1 + s * x0

    def target(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """u_t(x_t | x0, x1) = alpha'(t) x1 + sigma'(t) x0."""
        _, _, da, ds = self._coefficients(t, x1)
        return da * x1 + ds * x0

    def endpoints(self, value: Tensor, x_t: Tensor, t: Tensor, kind: str) -> tuple[Tensor, Tensor]:
        """The pair (x0_hat, x1_hat) that a ``kind`` prediction implies at (x_t, t).

        velocity: solve [[sigma, alpha], [sigma', alpha']] (x0, x1) = (x_t, v); the determinant
        sigma*alpha' - alpha*sigma' is positive on every path here (1 for rectified). Where it is infinite
        (sigma' diverges as sigma -> 0: the VP path at t=1) the limits are x0 = 0 and x1 = x_t / alpha.
        """
        a, s, da, ds = self._coefficients(t, x_t)
        if kind == "velocity":
            det = s * da - a * ds
            finite = torch.isfinite(det)
            det = torch.where(finite, det, torch.ones_like(det))  # no inf in either branch: safe gradients
            x0 = torch.where(finite, (da * x_t - a * value) / det, torch.zeros_like(x_t))
            x1 = torch.where(finite, (s * value - ds * x_t) / det, x_t / torch.where(a > 0, a, torch.ones_like(a)))
            return x0, x1
        if kind == "x1":
            return (x_t - a * value) / s, value
        if kind == "x0":
            return value, (x_t - s * value) / a
        if kind == "score":
            x0 = -s * value
            return x0, (x_t - s * x0) / a
        raise ValueError(f"unknown prediction '{kind}'; valid: {', '.join(PREDICTIONS)}")

    def from_endpoints(self, x0: Tensor, x1: Tensor, t: Tensor, kind: str) -> Tensor:
        """Express the pair (x0, x1) as a ``kind`` prediction at time t."""
        if kind == "x0":
            return x0
        if kind == "x1":
            return x1
        a, s, da, ds = self._coefficients(t, x1)
        if kind == "velocity":
            return da * x1 + ds * x0
        if kind == "score":
            return -x0 / s
        raise ValueError(f"unknown prediction '{kind}'; valid: {', '.join(PREDICTIONS)}")

    def convert(self, value: Tensor, x_t: Tensor, t: Tensor, src: str, dst: str) -> Tensor:
        """Turn a ``src`` prediction at (x_t, t) into the ``dst`` one (velocity, x1, x0, score)."""
        if src == dst:
            return value
        x0, x1 = self.endpoints(value, x_t, t, src)
        return self.from_endpoints(x0, x1, t, dst)

    def score_gain(self, x_t: Tensor, t: Tensor, kind: str) -> Tensor:
        """d(kind prediction) / d(score) at time t, broadcastable to ``x_t``: every conversion is affine in the
        score, so adding delta to the score (classifier guidance) adds ``score_gain * delta`` to the prediction.

            score: 1    x0: -sigma    x1: sigma^2 / alpha    velocity: alpha' sigma^2 / alpha - sigma sigma'

        0 where the gain is singular or undefined: alpha = 0 (t at the source end, where x_t carries nothing of
        the data, so a classifier's gradient there is 0 in the exact model) and sigma = 0 (the data end).
        """
        a, s, da, ds = self._coefficients(t, x_t)
        if kind == "score":
            return torch.ones_like(a)
        if kind == "x0":
            return -s
        if kind not in ("x1", "velocity"):
            raise ValueError(f"unknown prediction '{kind}'; valid: {', '.join(PREDICTIONS)}")
        inside = (a > 0) & (s > 0) & torch.isfinite(ds)
        a, s, ds = (torch.where(inside, c, torch.ones_like(c)) for c in (a, s, ds))
        gain = s * s / a if kind == "x1" else da * s * s / a - s * ds
        return torch.where(inside, gain, torch.zeros_like(gain))

    def log_snr(self, t: Tensor) -> Tensor:
        """lambda(t) = log(alpha(t) / sigma(t)), increasing in t; -inf where alpha = 0, +inf where sigma = 0."""
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def time_at_log_snr(self, lam: Tensor) -> Tensor:
        """The t in [0, 1] with lambda(t) = lam (float64): bisection, since lambda is increasing on every
        affine path; a lam beyond the path's range gives the end it passes (0 or 1). Closed forms may override."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo, hi = torch.zeros_like(lam), torch.ones_like(lam)
        for _ in range(60):  # 2^-60: below float64's spacing near 1
            mid = 0.5 * (lo + hi)
            below = self.log_snr(mid) < lam
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return torch.where(lam <= self.log_snr(lo.new_zeros(())), lo.new_zeros(()),
                           torch.where(lam >= self.log_snr(lo.new_ones(())), lo.new_ones(()), 0.5 * (lo + hi)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"
