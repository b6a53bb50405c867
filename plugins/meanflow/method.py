"""MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling") on any affine path.

The network u(z, r, t) (``model(z, r, t)``, built with ``times=2``) is the *average* velocity of the
flow from the state z at time r to time t >= r:

    u(z_r, r, t) = 1/(t - r) * integral_r^t v(z_s, s) ds,      so     z_t = z_r + (t - r) u(z_r, r, t).

Our convention (t=0 noise, t=1 data) against the paper's (noise at 1): the paper keys u on the state
at its later (noisier) time and jumps back to data, z_r = z_t - (t - r) u, and differentiates along
the flow at that end: u = v - (t - r) (v d_z u + d_t u), tangents (v, 0, 1) on (z, r, t). Here the
state sits at the earlier time r and the jump goes forward; differentiating
(t - r) u(z_r, r, t) = integral_r^t v ds in r along the flow (dz_r/dr = v) gives the MeanFlow identity

    u(z_r, r, t) = v(z_r, r) + (t - r) * (v d_z u + d_r u),     tangents (v, 1, 0) on (z, r, t),

i.e. the paper's with t <-> r and the sign of (t - r) flipped (tests check it on a curved flow with a
closed-form u). Training, per sample:

    (r, t) = sorted pair of two time-sampler draws; t := r for a fraction ``equal_fraction`` (plain CFM)
    z = path.sample(x0, x1, r),   v = path.target(x0, x1, r)   (the conditional velocity, any path)
    u, du/dr = torch.func.jvp(u_theta(., ., t), (z, r), (v, 1))
    delta = u - sg(v + (t - r) du/dr),   L = sg(w) ||delta||^2,   w = 1 / (||delta||^2 + c)^p

with ||.||^2 the mean over data dimensions (our per-sample convention). p = 1 is the paper's default;
in 2-D it weights the mode of the (wide) conditional velocity over its mean, and p = 0 (plain L2) did
better there (recipes/meanflow.yaml). d_r u passes through the network's time embedding: with the
default sinusoidal scale of 1000 it is ~1000x larger than the flow's own change and training diverged
at p = 0; the meanflow recipes use ``model.time_scale=1``. Sampling: the sampler ``meanflow:N`` takes N
average-velocity jumps on the grid (N NFE; registered by this plugin); any ODE sampler integrates
u(z, t, t), the instantaneous velocity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowkit.conditioning import Cond, cond_of
from flowkit.errors import ConfigError
from flowkit.methods import Method, per_sample_mse
from flowkit.models.attention import jvp_safe_attention
from flowkit.paths import AffinePath, expand_like
from flowkit.samplers import Predictor, Sampler


class MeanFlowJumps(Sampler):
    """Average-velocity jumps z_t = z_r + (t - r) u(z_r, r, t) between grid times (Geng et al. 2025), 1 NFE each."""

    ode = False  # needs a network of two times: methods name it in their samplers
    per_step = 1

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        x = x0
        for r, t in zip(ts[:-1], ts[1:]):
            r_b, t_b = r.expand(x.shape[0]), t.expand(x.shape[0])
            x = x + (t - r) * model(x, r_b, cond, t_end=t_b)
        return x, model.nfe


class MeanFlow(Method):
    """Geng et al. 2025, Alg. 1, in our time convention (module docstring)."""

    inputs = ("t_end",)
    samplers = ("meanflow",)

    def __init__(self, path: AffinePath, time_sampler, equal_fraction: float = 0.75, p: float = 1.0,
                 c: float = 1e-3) -> None:
        if not 0.0 <= equal_fraction <= 1.0:
            raise ConfigError(f"method 'meanflow': equal_fraction={equal_fraction} is out of range; expected 0..1")
        if p < 0 or c <= 0:
            raise ConfigError(f"method 'meanflow': p={p}, c={c}; expected p >= 0 and c > 0")
        self.path, self.time_sampler = path, time_sampler
        self.equal_fraction, self.p, self.c = equal_fraction, p, c

    def times(self, n: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(r, t) with r <= t, both from the time sampler; t = r for ``equal_fraction`` of the batch."""
        a = self.time_sampler(n, device).to(dtype)
        b = self.time_sampler(n, device).to(dtype)
        r, t = torch.minimum(a, b), torch.maximum(a, b)
        equal = torch.rand(n, device=device) < self.equal_fraction
        return r, torch.where(equal, r, t)

    @staticmethod
    def average_velocity(model: nn.Module, z: Tensor, r: Tensor, t: Tensor, v: Tensor,
                         **cond: Tensor) -> tuple[Tensor, Tensor]:
        """(u(z, r, t), its total derivative in r along the flow, v d_z u + d_r u) in one forward-mode pass."""
        with jvp_safe_attention():  # fused attention kernels have no forward-mode derivative
            return torch.func.jvp(lambda z_, r_: model(z_, r_, t, **cond), (z, r), (v, torch.ones_like(r)))

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x0, x1 = batch["x0"], batch["x1"]
        r, t = self.times(x1.shape[0], x1.device, x1.dtype)
        z, v = self.path.sample(x0, x1, r), self.path.target(x0, x1, r)
        u, du_dr = self.average_velocity(model, z, r, t, v, **cond_of(batch))
        u_target = (v + expand_like(t - r, v) * du_dr).detach()
        squared = per_sample_mse(u, u_target)
        weight = (squared.detach() + self.c) ** -self.p
        return {"loss": weight * squared, "mse": squared.detach()}
