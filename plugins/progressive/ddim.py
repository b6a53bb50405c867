"""Deterministic steps of an affine path (DDIM, Song et al. 2021), in flowkit's time (t=0 noise, t=1 data).

A step from t to s predicts the endpoints (x0, x1) at (x_t, t) and places them at time s:
x_s = alpha(s) x1 + sigma(s) x0. On the rectified path this is exactly an Euler step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowkit.paths import AffinePath, expand_like


def ddim_step(path: AffinePath, velocity: Tensor, x_t: Tensor, t: Tensor, s: Tensor) -> Tensor:
    x0, x1 = path.endpoints(velocity, x_t, t, "velocity")
    return path.sample(x0, x1, s)


def endpoints_through(path: AffinePath, x_t: Tensor, t: Tensor, x_s: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """The (x0, x1) that one DDIM step from (x_t, t) must predict to land on x_s at time s: the solution of
    x_t = a_t x1 + s_t x0, x_s = a_s x1 + s_s x0 (Salimans & Ho 2022, eq. 8: x~ = (z'' - (s''/s) z) / (a'' - (s''/s) a))."""
    a_t, s_t = path.alpha(expand_like(t, x_t)), path.sigma(expand_like(t, x_t))
    a_s, s_s = path.alpha(expand_like(s, x_t)), path.sigma(expand_like(s, x_t))
    det = a_s * s_t - a_t * s_s
    return (a_s * x_t - a_t * x_s) / det, (s_t * x_s - s_s * x_t) / det


@torch.no_grad()
def ddim_sample(model: nn.Module, path: AffinePath, x0: Tensor, steps: int) -> Tensor:
    """``steps`` uniform DDIM steps from t=0 to t=1: ``steps`` network calls."""
    x = x0
    for i in range(steps):
        t = torch.full((x.shape[0],), i / steps, device=x.device, dtype=x.dtype)
        x = ddim_step(path, model(x, t), x, t, t + 1 / steps)
    return x
