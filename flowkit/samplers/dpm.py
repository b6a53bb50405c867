"""DPM-Solver-2 (Lu et al. 2022, Alg. 1 with r1 = 1/2) and DPM-Solver++(2M) / (3M) (Lu et al. 2023, Alg. 2 and
its third-order multistep update) on any affine path, written in our time (t=0 source, t=1 data;
lambda = log(alpha / sigma) increases with t).

From x_t at t to s, h = lambda(s) - lambda(t) > 0 (< 0 when inverting):

DPM-Solver-2, noise prediction eps (the x0 prediction here), 2 NFE a step: with lambda(m) = lambda(t) + h/2,

    u   = alpha(m)/alpha(t) x_t - sigma(m) (e^(h/2) - 1) eps(x_t, t)
    x_s = alpha(s)/alpha(t) x_t - sigma(s) (e^h - 1) eps(u, m)

DPM-Solver++(2M), data prediction D (x1_hat), 1 NFE a step: with the previous step's h' and x1_hat',
r = h' / h,

    D   = (1 + 1/(2r)) x1_hat - 1/(2r) x1_hat'          (D = x1_hat on the first step)
    x_s = sigma(s)/sigma(t) x_t - alpha(s) (e^(-h) - 1) D

DPM-Solver++(3M), 1 NFE a step: with the data predictions D0, D1, D2 at the current and the two earlier
evaluations (log-SNR lambda0 > lambda1 > lambda2), r0 = (lambda0 - lambda1) / h, r1 = (lambda1 - lambda2) / h,
the divided differences give the slope and curvature of D in lambda,

    d0 = (D0 - D1) / r0,   d1 = (D1 - D2) / r1
    slope = d0 + r0 / (r0 + r1) (d0 - d1),   curvature = 2 (d0 - d1) / (r0 + r1)
    phi1 = e^(-h) - 1,   phi2 = phi1 / h + 1,   phi3 = phi2 / h - 1/2
    x_s = sigma(s)/sigma(t) x_t - alpha(s) (phi1 D0 - phi2 slope + phi3 curvature)

(2M is the same expansion cut after the slope, with the slope from D0 and D1 alone.) phi1, -h phi2 and h^2 phi3
are the exact integrals of e^(-(h - tau)) against 1, tau and tau^2 / 2 over the step, so the curvature must be
h^2 D'' in full: the multistep third-order update as published in code (DPM-Solver's and diffusers')
divides by (r0 + r1) without the 2, taking h^2 D'' / 2 (their singlestep third-order solver keeps the 2), and on
the closed-form Gaussian flow it converges at order 2; with the 2 it converges at order 3
(tests/test_sampler_orders.py). The first step of an interior run has no earlier evaluations; a first-order step
there would cap the global order at 2, so 3M starts with one second-order singlestep (DPM-Solver++(2S): the data
prediction at the log-SNR midpoint, 1 NFE more), whose two evaluations are the earlier ones of the next step.

A step that touches an end of the path where lambda is infinite (alpha = 0 at the source of the rectified,
CondOT and cosine paths, sigma = 0 at the data) is the first-order DDIM step: its log-SNR gap is infinite.
What holds, measured against the exact Gaussian flow from 64 to 512 steps (bench/sampler_orders.py, the largest
error over 256 points): on their default grid, ``graded`` (t ~ u^2 over the outer 10% of u at each end,
flowkit/samplers/grids.py), DPM-Solver-2 converges at 1.97-2.00, 2M at 2.07-2.16 and 3M at 3.22 on the cosine,
CondOT and rectified paths and 2.81 on VP (``graded:3``, t ~ u^3: 3.14-3.32); on the ``uniform`` grid the
first-order end steps (an h^2 log(1/h) term from the O(1) log-SNR steps next to them) and VP's sigma ~ sqrt(1 - t)
at the data cap them: DPM-Solver-2 1.7 (VP 1.3), 2M 1.6-2.0, 3M 1.5-2.0. The order is a statement about many steps;
at few steps the grid trades one error for another. Below 32 steps ``graded`` grades a smaller share (5% at 16
steps, 2.5% at 8), so few-step sampling stays close to uniform; on two trained 2-D networks (bench/grid_choice.py,
distance to a tight dopri5 solution at 8 to 64 steps) ``graded`` is within 1.2x of ``uniform`` or better for
DPM-Solver-2 everywhere and for 2M and 3M on the rectified path (up to 3x better), but 1.5-1.8x worse for 2M on VP
at 32-64 steps and 2.1-2.3x worse for 3M on VP at 16-32; ``grid=uniform`` is the other choice there.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.conditioning import Cond
from flowkit.samplers.base import Predictor, Sampler, register_sampler
from flowkit.samplers.ddim import at, coefficients, interior, log_snr_gap, place


def midpoint(path, a_t: float, s_t: float, h: float) -> tuple[Tensor, float, float]:
    """The time halfway in log-SNR between t and a step h away, and its (alpha, sigma)."""
    m = path.time_at_log_snr(torch.tensor(math.log(a_t / s_t) + h / 2, dtype=torch.float64))
    return (m, *coefficients(path, m))


@register_sampler("dpm2")
class DPMSolver2(Sampler):
    """DPM-Solver-2 (singlestep, noise prediction, midpoint in log-SNR), 2 NFE a step (1 at the path's ends);
    default grid ``graded``."""

    per_step = 2
    default_grid = "graded"  # its order on every path (module docstring)

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        path, x = model.path, x0
        for t, s in zip(ts[:-1], ts[1:]):
            x0_hat, x1_hat = model.endpoints(x, at(t, x), cond)
            if not interior(path, t, s):
                x = place(path, x0_hat, x1_hat, t, s)
                continue
            (a_t, s_t), (a_s, s_s) = coefficients(path, t), coefficients(path, s)
            h = log_snr_gap(a_t, s_t, a_s, s_s)
            m, a_m, s_m = midpoint(path, a_t, s_t, h)
            u = (a_m / a_t) * x - s_m * math.expm1(h / 2) * x0_hat
            eps_m = model.predict("x0", u, at(m, x), cond)
            x = (a_s / a_t) * x - s_s * math.expm1(h) * eps_m
        return x, model.nfe


class DPMSolverPPMultistep(Sampler):
    """DPM-Solver++ multistep in data prediction, 1 NFE a step, of order ``order`` (2 or 3) from the earlier
    evaluations of the same interior run (module docstring)."""

    order = 2
    per_step = 1
    default_grid = "graded"  # its order on every path (module docstring)

    def nfe(self, steps: int | None) -> int | None:
        """A step each, and one more for the third-order starter (at most one interior run on a grid)."""
        return None if steps is None else steps + (self.order == 3)

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        path, x = model.path, x0
        history: list[tuple[float, Tensor]] = []  # (lambda, x1_hat) at earlier interior evaluations, newest last
        for t, s in zip(ts[:-1], ts[1:]):
            x0_hat, x1_hat = model.endpoints(x, at(t, x), cond)
            if not interior(path, t, s):
                x, history = place(path, x0_hat, x1_hat, t, s), []
                continue
            (a_t, s_t), (a_s, s_s) = coefficients(path, t), coefficients(path, s)
            h, lam = log_snr_gap(a_t, s_t, a_s, s_s), math.log(a_t / s_t)
            if self.order == 3 and not history:  # the starter: a second-order singlestep (2S) through the midpoint
                m, a_m, s_m = midpoint(path, a_t, s_t, h)
                u = (s_m / s_t) * x - a_m * math.expm1(-h / 2) * x1_hat
                x1_mid = model.predict("x1", u, at(m, x), cond)
                x = (s_s / s_t) * x - a_s * math.expm1(-h) * x1_mid
                history = [(lam, x1_hat), (math.log(a_m / s_m), x1_mid)]  # the midpoint as found
                continue
            x = (s_s / s_t) * x - a_s * increment(h, lam, x1_hat, history)
            history = (history + [(lam, x1_hat)])[1 - self.order:]  # the order - 1 newest
        return x, model.nfe


def increment(h: float, lam: float, d0: Tensor, earlier: list[tuple[float, Tensor]]) -> Tensor:
    """(sigma(s)/sigma(t) x_t - x_s) / alpha(s) of a DPM-Solver++ multistep update from lambda to lambda + h: the
    Taylor terms of the data prediction in lambda that the earlier (lambda, D) allow (module docstring)."""
    phi1 = math.expm1(-h)
    if not earlier:
        return phi1 * d0
    if len(earlier) == 1:
        half_inv_r = h / (2 * (lam - earlier[0][0]))
        return phi1 * ((1 + half_inv_r) * d0 - half_inv_r * earlier[0][1])
    (lam2, d2), (lam1, d1) = earlier
    r0, r1 = (lam - lam1) / h, (lam1 - lam2) / h
    first_0, first_1 = (d0 - d1) / r0, (d1 - d2) / r1  # h D' at the midpoints of the two earlier gaps
    slope = first_0 + r0 / (r0 + r1) * (first_0 - first_1)  # h D'(lambda)
    curvature = 2 * (first_0 - first_1) / (r0 + r1)  # h^2 D''(lambda)
    phi2 = phi1 / h + 1
    phi3 = phi2 / h - 0.5
    return phi1 * d0 - phi2 * slope + phi3 * curvature


@register_sampler("dpm++2m")
class DPMSolverPP2M(DPMSolverPPMultistep):
    """DPM-Solver++(2M): multistep, data prediction, 1 NFE a step; first order on the first step and at the ends;
    default grid ``graded``."""

    order = 2


@register_sampler("dpm++3m")
class DPMSolverPP3M(DPMSolverPPMultistep):
    """DPM-Solver++(3M): multistep, data prediction, 1 NFE a step after a second-order starter step (2 NFE) at the
    start of each interior run; first order at the path's ends; default grid ``graded``."""

    order = 3
