"""DPM-Solver-2 (Lu et al. 2022, Alg. 1 with r1 = 1/2) and DPM-Solver++(2M) (Lu et al. 2023, Alg. 2) on any
affine path, written in our time (t=0 source, t=1 data; lambda = log(alpha / sigma) increases with t).

From x_t at t to s, h = lambda(s) - lambda(t) > 0 (< 0 when inverting):

DPM-Solver-2, noise prediction eps (the x0 prediction here), 2 NFE a step: with lambda(m) = lambda(t) + h/2,

    u   = alpha(m)/alpha(t) x_t - sigma(m) (e^(h/2) - 1) eps(x_t, t)
    x_s = alpha(s)/alpha(t) x_t - sigma(s) (e^h - 1) eps(u, m)

DPM-Solver++(2M), data prediction D (x1_hat), 1 NFE a step: with the previous step's h' and x1_hat',
r = h' / h,

    D   = (1 + 1/(2r)) x1_hat - 1/(2r) x1_hat'          (D = x1_hat on the first step)
    x_s = sigma(s)/sigma(t) x_t - alpha(s) (e^(-h) - 1) D

A step that touches an end of the path where lambda is infinite (alpha = 0 at the source of the rectified,
CondOT and cosine paths, sigma = 0 at the data) is the first-order DDIM step: its log-SNR gap is infinite,
and its local error is still second order in t, so the solvers keep their order (tests/test_sampler_orders.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.conditioning import Cond
from flowkit.samplers.base import Predictor, Sampler, register_sampler
from flowkit.samplers.ddim import at, coefficients, interior, log_snr_gap, place


@register_sampler("dpm2")
class DPMSolver2(Sampler):
    """DPM-Solver-2 (singlestep, noise prediction, midpoint in log-SNR), 2 NFE a step (1 at the path's ends)."""

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        path, x = model.path, x0
        for t, s in zip(ts[:-1], ts[1:]):
            x0_hat, x1_hat = model.endpoints(x, at(t, x), cond)
            if not interior(path, t, s):
                x = place(path, x0_hat, x1_hat, t, s)
                continue
            (a_t, s_t), (a_s, s_s) = coefficients(path, t), coefficients(path, s)
            h = log_snr_gap(a_t, s_t, a_s, s_s)
            m = path.time_at_log_snr(torch.tensor(math.log(a_t / s_t) + h / 2, dtype=torch.float64))
            a_m, s_m = coefficients(path, m)
            u = (a_m / a_t) * x - s_m * math.expm1(h / 2) * x0_hat
            eps_m = model.predict("x0", u, at(m, x), cond)
            x = (a_s / a_t) * x - s_s * math.expm1(h) * eps_m
        return x, model.nfe


@register_sampler("dpm++2m")
class DPMSolverPP2M(Sampler):
    """DPM-Solver++(2M): multistep, data prediction, 1 NFE a step; first order on the first step and at the ends."""

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        path, x = model.path, x0
        previous: tuple[float, Tensor] | None = None  # (h, x1_hat) of the step before, when it was interior
        for t, s in zip(ts[:-1], ts[1:]):
            x0_hat, x1_hat = model.endpoints(x, at(t, x), cond)
            if not interior(path, t, s):
                x, previous = place(path, x0_hat, x1_hat, t, s), None
                continue
            (a_t, s_t), (a_s, s_s) = coefficients(path, t), coefficients(path, s)
            h = log_snr_gap(a_t, s_t, a_s, s_s)
            d = x1_hat
            if previous is not None:
                half_inv_r = h / (2 * previous[0])
                d = (1 + half_inv_r) * x1_hat - half_inv_r * previous[1]
            x = (s_s / s_t) * x - a_s * math.expm1(-h) * d
            previous = (h, x1_hat)
        return x, model.nfe
