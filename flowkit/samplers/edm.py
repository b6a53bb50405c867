"""EDM's second-order Heun sampler with stochastic churn (Karras et al. 2022, Alg. 2), on any affine path.

EDM integrates the ODE of the scaled state y = x / alpha in the noise-to-signal ratio r = sigma / alpha,
dy/dr = (y - D(y; r)) / r = eps, where D is the data prediction (x1_hat) and eps the noise prediction (x0_hat).
From time t_i to t_{i+1} (ratios r_i > r_{i+1}):

    churn:  if S_tmin <= r_i <= S_tmax: gamma = min(S_churn / N, sqrt(2) - 1), r_hat = (1 + gamma) r_i,
            y_hat = y_i + sqrt(r_hat^2 - r_i^2) S_noise z               (else r_hat = r_i, no noise)
    Euler:  y_{i+1} = y_hat + (r_{i+1} - r_hat) eps(y_hat; r_hat)
    Heun:   y_{i+1} = y_hat + (r_{i+1} - r_hat) (eps(y_hat; r_hat) + eps(y_{i+1}; r_{i+1})) / 2

and x = alpha y at the time of each ratio (``AffinePath.time_at_log_snr``, log r = -lambda). The Euler step is
the DDIM step. As in EDM the last step, onto the data (r = 0), is Euler; so is a step from pure source
(alpha = 0, r infinite: the rectified, CondOT and cosine paths at t=0). N steps cost 2N - 1 NFE (2N - 2 from
pure source). With ``churn=0`` (the default) the sampler is deterministic and can invert. ``tmin``/``tmax``
are in units of r, as EDM's S_tmin/S_tmax in sigma.

Its default grid is ``graded`` (flowkit/samplers/grids.py): against the exact Gaussian flow from 64 to 512 steps
(bench/sampler_orders.py) it converges at 1.99-2.03 on every built-in path there, while on ``uniform`` the Euler
end steps and VP's sigma ~ sqrt(1 - t) at the data cap it (1.9 on the straight paths, 1.25 on VP). On trained 2-D
networks (bench/grid_choice.py) ``graded`` is 1.2-1.5x worse than ``uniform`` at 8-16 steps and 2.3x at 64 on the
rectified path, 1.6-4x better at 32-64 steps on VP.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.conditioning import Cond
from flowkit.samplers.base import Predictor, Sampler, register_sampler
from flowkit.samplers.ddim import at, coefficients, gaussian, interior, noise_generator, place


@register_sampler("edm")
class EDMHeun(Sampler):
    """EDM's Heun sampler on sigma/alpha, with stochastic churn (S_churn etc.); 2 NFE a step, 1 at the ends;
    default grid ``graded``."""

    per_step = 2
    default_grid = "graded"  # its order on every path (module docstring)

    def __init__(self, churn: float = 0.0, tmin: float = 0.0, tmax: float = math.inf, noise: float = 1.0,
                 seed: int = 0) -> None:
        if not (churn >= 0 and 0 <= tmin <= tmax and noise >= 0):
            raise ValueError(f"churn={churn}, tmin={tmin}, tmax={tmax}, noise={noise} are out of range; expected "
                             "churn >= 0, 0 <= tmin <= tmax, noise >= 0")
        self.churn, self.tmin, self.tmax, self.noise, self.seed = churn, tmin, tmax, noise, seed
        self.stochastic = churn > 0

    def churned(self, model: Predictor, x: Tensor, t: Tensor, steps: int,
                generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(x, t) after EDM's churn: the state moved back to a noisier time with fresh noise, or as it was."""
        a, s = coefficients(model.path, t)
        if not self.stochastic or a == 0.0 or s == 0.0 or not self.tmin <= s / a <= self.tmax:
            return x, t
        ratio_hat = (1 + min(self.churn / steps, math.sqrt(2) - 1)) * s / a
        t_hat = model.path.time_at_log_snr(torch.tensor(-math.log(ratio_hat), dtype=torch.float64))
        a_h, s_h = coefficients(model.path, t_hat)
        z = gaussian(x, generator) * self.noise
        if a_h == 0.0:  # back to pure source
            return s_h * z, t_hat.to(t)
        added = math.sqrt(max(0.0, (s_h / a_h) ** 2 - (s / a) ** 2))
        return a_h * (x / a + added * z), t_hat.to(t)

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        path, x, generator, steps = model.path, x0, noise_generator(x0, self.seed), ts.shape[0] - 1
        for t, s in zip(ts[:-1], ts[1:]):
            x, t = self.churned(model, x, t, steps, generator)
            eps, x1_hat = model.endpoints(x, at(t, x), cond)
            x_next = place(path, eps, x1_hat, t, s)
            if interior(path, t, s):
                eps_next = model.predict("x0", x_next, at(s, x), cond)
                (a_t, s_t), (a_s, s_s) = coefficients(path, t), coefficients(path, s)
                x_next = a_s * (x / a_t + (s_s / a_s - s_t / a_t) * (eps + eps_next) / 2)
            x = x_next
        return x, model.nfe
