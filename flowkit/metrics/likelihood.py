"""Log-likelihood of a flow by the instantaneous change of variables (Chen et al. 2018, Thm. 1).

Along a trajectory of dx/dt = v(x, t), d log p_t(x_t) / dt = -div v(x_t, t). Integrating the
augmented state (x, l) with dl/dt = div v backwards from t=1 (the data point) to t=0 gives the
source point x0 and l(0) = -int_0^1 div v dt, so

    log p_1(x1) = log p_0(x0) + l(0).

The divergence is exact (one backward pass per dimension) up to ``exact_max_dim`` dimensions and
otherwise Hutchinson's estimator E[eps^T (dv/dx) eps] with Rademacher eps held fixed along the
trajectory (Grathwohl et al. 2019, FFJORD).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from flowkit.samplers.integrate import VelocityFn, odeint_checked, solver_grid


def exact_divergence(v: Tensor, x: Tensor) -> Tensor:
    """Trace of dv/dx per sample, one vector-Jacobian product per dimension; x must require grad."""
    flat = v.flatten(1)
    total = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
    for i in range(flat.shape[1]):
        (grad,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True)
        total = total + grad.flatten(1)[:, i]
    return total


def hutchinson_divergence(v: Tensor, x: Tensor, eps: Tensor) -> Tensor:
    """eps^T (dv/dx) eps per sample: an unbiased estimate of the divergence for E[eps eps^T] = I."""
    (vjp,) = torch.autograd.grad(v, x, grad_outputs=eps, retain_graph=True)
    return (vjp * eps).flatten(1).sum(1)


def standard_normal_logp(x: Tensor) -> Tensor:
    d = x[0].numel()
    return -0.5 * x.flatten(1).pow(2).sum(1) - 0.5 * d * math.log(2 * math.pi)


def log_likelihood(
    velocity_fn: VelocityFn,
    x1: Tensor,
    source_logp: Callable[[Tensor], Tensor] = standard_normal_logp,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    exact_max_dim: int = 8,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    """(log p_1(x1) per sample, NFE). Exact divergence when the data has at most ``exact_max_dim``
    dimensions, Hutchinson (one Rademacher probe per sample, fixed along the path) above."""
    exact = x1[0].numel() <= exact_max_dim
    eps = None
    if not exact:
        eps = torch.randint(0, 2, x1.shape, generator=generator, dtype=torch.int64).to(x1) * 2 - 1
    nfe = 0

    def f(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        nonlocal nfe
        nfe += 1
        x = state[0]
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            v = velocity_fn(x, t.expand(x.shape[0]))
            div = exact_divergence(v, x) if exact else hutchinson_divergence(v, x, eps)
        return v.detach(), div.detach()

    times, options = solver_grid(method, steps, rtol, atol, x1)
    times = times.flip(0)  # backwards: data (t=1) to source (t=0)
    zero = torch.zeros(x1.shape[0], device=x1.device, dtype=x1.dtype)
    with torch.no_grad():
        xs, ls = odeint_checked(f, (x1, zero), times, method, **options)
    return source_logp(xs[-1]) + ls[-1], nfe


def bits_per_dim(logp: Tensor, dims: int, bin_width: float) -> Tensor:
    """-log2 of the probability of the quantisation bin, per dimension: for data whose levels are
    ``bin_width`` apart in model space (digits: 17 levels on [-1, 1], bin_width = 1/8), a uniform
    dequantisation gives -log P(bin) ~= -log p(x) - D log(bin_width)."""
    return -(logp / dims + math.log(bin_width)) / math.log(2)
