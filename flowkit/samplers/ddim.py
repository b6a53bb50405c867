"""DDIM (Song et al. 2021, "Denoising Diffusion Implicit Models", eq. 12 with eta = 0) on any affine path.

A step from t to s predicts the endpoints (x0_hat, x1_hat) at (x_t, t) and places them at time s:

    x_s = alpha(s) x1_hat + sigma(s) x0_hat

which is the first-order exponential integrator of the probability-flow ODE (DPM-Solver-1, Lu et al.
2022). On the rectified path (alpha = t, sigma = 1 - t) it is exactly an Euler step of the velocity.
"""

from __future__ import annotations

from torch import Tensor

from flowkit.conditioning import Cond
from flowkit.paths import AffinePath
from flowkit.samplers.base import Predictor, Sampler, register_sampler


def ddim_step(path: AffinePath, velocity: Tensor, x_t: Tensor, t: Tensor, s: Tensor) -> Tensor:
    """x_s from x_t and the velocity predicted there: the implied endpoints, placed at time s."""
    x0, x1 = path.endpoints(velocity, x_t, t, "velocity")
    return path.sample(x0, x1, s)


@register_sampler("ddim")
class DDIM(Sampler):
    """DDIM (deterministic), 1 NFE a step: the predicted endpoints re-placed on the path at the next time."""

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        x = x0
        for t, s in zip(ts[:-1], ts[1:]):
            t_b, s_b = t.expand(x.shape[0]), s.expand(x.shape[0])
            x0_hat, x1_hat = model.endpoints(x, t_b, cond)
            x = model.path.sample(x0_hat, x1_hat, s_b)
        return x, model.nfe
