"""DDIM (Song, Meng & Ermon 2021, eq. 12) on any affine path, deterministic (eta = 0) or stochastic, and
ancestral (DDPM) sampling, its eta = 1 case; the step primitives the other exponential integrators share.

A step from t to s predicts the endpoints (x0_hat, x1_hat) at (x_t, t) and places them at time s:

    x_s = alpha(s) x1_hat + sqrt(sigma(s)^2 - c^2) x0_hat + c z,    c = eta sigma(s) sqrt(1 - exp(-2 h))

with h = lambda(s) - lambda(t), lambda = log(alpha / sigma), z ~ N(0, I). With eta = 0 this is the
first-order exponential integrator of the probability-flow ODE (DPM-Solver-1, Lu et al. 2022); on the
rectified path (alpha = t, sigma = 1 - t) exactly an Euler step of the velocity. With eta = 1 it draws
x_s from the posterior q(x_s | x_t, x1 = x1_hat) of the path's Gaussian noising: DDPM's ancestral step
(Ho et al. 2020), or k-diffusion's Euler-ancestral written on sigma/alpha. exp(-h) = alpha(t) sigma(s) /
(sigma(t) alpha(s)) is computed from alpha and sigma, so steps from pure source (alpha(t) = 0) or onto the
data (sigma(s) = 0) need no infinite log-SNR.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.conditioning import Cond
from flowkit.paths import AffinePath
from flowkit.samplers.base import Predictor, Sampler, register_sampler


def coefficients(path: AffinePath, t: Tensor) -> tuple[float, float]:
    """(alpha(t), sigma(t)) of a scalar time, as float64 Python numbers."""
    t64 = t.detach().to("cpu", torch.float64).reshape(1)
    return float(path.alpha(t64)), float(path.sigma(t64))


def interior(path: AffinePath, *times: Tensor) -> bool:
    """Whether lambda is finite at every one of ``times`` (alpha > 0 and sigma > 0): where a higher-order
    step may evaluate log-SNR differences. At the path's ends samplers step first-order (DDIM)."""
    return all(a > 0 and s > 0 for a, s in (coefficients(path, t) for t in times))


def log_snr_gap(a_t: float, s_t: float, a_s: float, s_s: float) -> float:
    """h = lambda(s) - lambda(t) from the coefficients of two interior times."""
    return math.log(a_s / s_s) - math.log(a_t / s_t)


def at(t: Tensor, x: Tensor) -> Tensor:
    """A scalar time as the (batch,) tensor a network takes."""
    return torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])


def place(path: AffinePath, x0_hat: Tensor, x1_hat: Tensor, t: Tensor, s: Tensor, eta: float = 0.0,
          noise: Tensor | None = None) -> Tensor:
    """The DDIM step's result at time s from the endpoints predicted at time t (module docstring)."""
    (a_t, s_t), (a_s, s_s) = coefficients(path, t), coefficients(path, s)
    if eta == 0.0 or s_s == 0.0:
        return a_s * x1_hat + s_s * x0_hat
    decay = a_t * s_s / (s_t * a_s)  # exp(-h)
    c = min(s_s, eta * s_s * math.sqrt(max(0.0, 1.0 - decay**2)))
    return a_s * x1_hat + math.sqrt(s_s**2 - c**2) * x0_hat + c * noise


def ddim_step(path: AffinePath, velocity: Tensor, x_t: Tensor, t: Tensor, s: Tensor) -> Tensor:
    """x_s from x_t and the velocity predicted there: the implied endpoints, placed at time s (per-sample t, s)."""
    x0, x1 = path.endpoints(velocity, x_t, t, "velocity")
    return path.sample(x0, x1, s)


def gaussian(x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def noise_generator(x: Tensor, seed: int) -> torch.Generator:
    """The generator of a stochastic sampler's noise: its ``seed`` option, on the batch's device."""
    return torch.Generator(device=x.device).manual_seed(seed)


@register_sampler("ddim")
class DDIM(Sampler):
    """DDIM, 1 NFE a step: the predicted endpoints re-placed at the next time; eta > 0 adds fresh noise."""

    per_step = 1

    def __init__(self, eta: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta={eta} is out of range; expected 0 <= eta <= 1 (0: deterministic, 1: ancestral)")
        self.eta, self.seed = eta, seed
        self.stochastic = eta > 0

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        x, generator = x0, noise_generator(x0, self.seed)
        for t, s in zip(ts[:-1], ts[1:]):
            x0_hat, x1_hat = model.endpoints(x, at(t, x), cond)
            noise = gaussian(x, generator) if self.stochastic else None
            x = place(model.path, x0_hat, x1_hat, t, s, self.eta, noise)
        return x, model.nfe


@register_sampler("ancestral")
class Ancestral(DDIM):
    """Ancestral (DDPM) sampling, 1 NFE a step: x_s drawn from the path's posterior given x_t and x1_hat."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__(eta=1.0, seed=seed)
