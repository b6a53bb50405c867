"""ODE sampling through torchdiffeq, with the NFE actually spent.

``solve(velocity_fn, x0, method=..., steps=... | rtol=..., atol=...)`` integrates dx/dt = v(x, t)
from t=0 (source) to t=1 (data). Adaptive methods take rtol/atol; fixed-step methods take a number
of uniform steps. One NFE is one call of ``velocity_fn`` on the batch. torchdiffeq warns about, but
does not refuse, options a method does not use; here they are an error.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torchdiffeq import odeint

from flowkit.errors import ConfigError

ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED = ("euler", "midpoint", "heun3", "rk4")
SOLVERS = ADAPTIVE + FIXED

VelocityFn = Callable[[Tensor, Tensor], Tensor]


def parse_solver(spec: str) -> tuple[str, int | None]:
    """'rk4:8' -> ('rk4', 8); 'dopri5' -> ('dopri5', None)."""
    name, _, steps = spec.partition(":")
    if name not in SOLVERS:
        raise ConfigError(f"unknown solver '{name}'; valid: {', '.join(SOLVERS)}")
    if name in FIXED:
        if not steps.isdigit() or int(steps) < 1:
            raise ConfigError(f"solver '{spec}': a fixed-step solver needs a step count, e.g. '{name}:4'")
        return name, int(steps)
    if steps:
        raise ConfigError(f"solver '{spec}': '{name}' is adaptive and takes no step count (set rtol/atol)")
    return name, None


def solver_grid(method: str, steps: int | None, rtol: float, atol: float, x0: Tensor,
                points: int | None = None) -> tuple[Tensor, dict]:
    """The output times and torchdiffeq options of a solver; fixed-step solvers step on the time grid."""
    if method in FIXED:
        if steps is None or steps < 1:
            raise ConfigError(f"solver '{method}' needs steps >= 1; got {steps}")
        return torch.linspace(0.0, 1.0, steps + 1, device=x0.device, dtype=x0.dtype), {}
    if method in ADAPTIVE:
        if steps is not None:
            raise ConfigError(f"solver '{method}' is adaptive and takes no step count; set rtol/atol")
        times = torch.linspace(0.0, 1.0, points or 2, device=x0.device, dtype=x0.dtype)
        return times, {"rtol": rtol, "atol": atol}
    raise ConfigError(f"unknown solver '{method}'; valid: {', '.join(SOLVERS)}")


@torch.no_grad()
def solve_trajectory(
    velocity_fn: VelocityFn,
    x0: Tensor,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    points: int = 101,
) -> tuple[Tensor, Tensor, int]:
    """(states, times, nfe): the states at every step of a fixed-step solver, or at ``points`` evenly
    spaced times for an adaptive one (which still chooses its own steps in between)."""
    times, options = solver_grid(method, steps, rtol, atol, x0, points)
    nfe = 0

    def f(t: Tensor, x: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1  # a Python counter: no host sync on the GPU
        return velocity_fn(x, t.expand(x.shape[0]))

    states = odeint(f, x0, times, method=method, **options)
    return states, times, nfe


def solve(
    velocity_fn: VelocityFn,
    x0: Tensor,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> tuple[Tensor, int]:
    """Integrate from t=0 to t=1; returns (x1, nfe)."""
    states, _, nfe = solve_trajectory(velocity_fn, x0, method, steps, rtol, atol, points=2)
    return states[-1], nfe


@torch.no_grad()
def renoise_sample(denoise: Callable[[Tensor, Tensor], Tensor], path, x0: Tensor, steps: int,
                   pair: Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
    """Multistep sampling of a few-step generator (Song et al. 2023, Alg. 1): x = denoise(x0, 0), then for
    tau = 1/steps, ..., (steps-1)/steps re-noise along the path, x_tau = alpha(tau) x + sigma(tau) z, and
    x = denoise(x_tau, tau). ``steps`` NFE. ``denoise(x_t, t)`` predicts the data point x1. Each z is a
    fixed permutation of ``x0`` (the source draws are i.i.d., so any source distribution works).

    ``pair(x, z)`` reorders z to pair with the current samples x: a network trained on coupled pairs (e.g.
    minibatch OT) has only seen interpolants of coupled pairs, and an independent z puts x_tau off that
    distribution (``flowkit.couplings.pair_in_blocks``). Default: independent z."""
    n = x0.shape[0]
    x = denoise(x0, torch.zeros(n, device=x0.device, dtype=x0.dtype))
    for k in range(1, steps):
        tau = torch.full((n,), k / steps, device=x0.device, dtype=x0.dtype)
        noise = x0[torch.randperm(n, generator=torch.Generator().manual_seed(k)).to(x0.device)]
        if pair is not None:
            noise = pair(x, noise)
        x = denoise(path.sample(noise, x, tau), tau)
    return x


def renoise_solve(denoise: Callable[[Tensor, Tensor], Tensor], path, x0: Tensor, method: str, steps: int,
                  what: str, pair: Callable[[Tensor, Tensor], Tensor] | None = None) -> tuple[Tensor, int]:
    """The ``sample`` of a few-step generator (``what`` names it): ``euler:N`` is N-step ``renoise_sample``
    (N NFE); any other solver integrates an ODE, which such a network does not define (ConfigError)."""
    if method != "euler":
        raise ConfigError(f"solver '{method}' integrates an ODE, which {what} does not define; "
                          "use euler:N for N-step sampling")
    return renoise_sample(denoise, path, x0, steps, pair), steps
