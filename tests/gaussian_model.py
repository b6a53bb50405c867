"""The exact flow of Gaussian data on any affine path: the oracle the sampler tests measure against.

Data x1 ~ N(mu, s^2 I), source x0 ~ N(0, I) independent: x_t ~ N(alpha mu, v_t I), v_t = alpha^2 s^2 + sigma^2, and

    E[x1 | x_t] = mu + alpha s^2 / v_t (x_t - alpha mu),   E[x0 | x_t] = sigma / v_t (x_t - alpha mu)
    v(x, t) = alpha' mu + (alpha alpha' s^2 + sigma sigma') / v_t (x - alpha mu)

The ODE keeps (x_t - alpha mu) / sqrt(v_t) fixed, so the map from t=0 is x1 = mu + s (x0 - alpha0 mu) / sqrt(v_0).
"""

import torch
from torch import nn

MU = torch.tensor([1.5, -0.5], dtype=torch.float64)
S = 0.6


class GaussianVelocity(nn.Module):
    """The marginal velocity of N(MU, S^2 I) data on ``path`` (a network in the samplers' eyes)."""

    def __init__(self, path, mu=MU, s=S):
        super().__init__()
        self.path, self.mu, self.s = path, mu, s

    def forward(self, x, t, cond=None):
        t = t.double().clamp(max=1 - 1e-12)[:, None]  # sigma sigma' is finite at t=1; sigma' alone is not (VP)
        p, mu = self.path, self.mu.to(x.device)
        a, sg, da, ds = p.alpha(t), p.sigma(t), p.d_alpha(t), p.d_sigma(t)
        c = (a * da * self.s**2 + sg * ds) / (a**2 * self.s**2 + sg**2)
        return (da * mu + c * (x.double() - a * mu)).to(x.dtype)


def exact_map(path, x0, mu=MU, s=S):
    """Where the ODE takes source points x0 at t=0 at t=1."""
    t0 = torch.zeros(1, dtype=torch.float64)
    a0, s0 = float(path.alpha(t0)), float(path.sigma(t0))
    return mu + s * (x0 - a0 * mu) / (a0**2 * s**2 + s0**2) ** 0.5


def exact_inverse(path, x1, mu=MU, s=S):
    t0 = torch.zeros(1, dtype=torch.float64)
    a0, s0 = float(path.alpha(t0)), float(path.sigma(t0))
    return a0 * mu + (x1 - mu) / s * (a0**2 * s**2 + s0**2) ** 0.5


def vp_x0(x, t):
    """E[x0 | x_t] of N(MU, S^2 I) data on the VP path: a teacher flowkit did not train, predicting x0 on its own path
    (``method.teacher=tests.gaussian_model:vp_x0:predicts=x0:path=vp``)."""
    from flowkit.paths import PATHS

    path = PATHS.build({"name": "vp"})
    t = t.double()[:, None]
    a, sg = path.alpha(t), path.sigma(t)
    return (sg / (a**2 * S**2 + sg**2) * (x.double() - a * MU)).to(x.dtype)


class GaussianX0(nn.Module):
    """``vp_x0`` as a module whose data mean is a parameter: zero until its weights (``MU``) are loaded."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(2))

    def forward(self, x, t):
        from flowkit.paths.vp import VP

        path = VP()
        t = t[:, None]
        a, sg = path.alpha(t), path.sigma(t)
        return sg / (a**2 * S**2 + sg**2) * (x - a * self.mu)
