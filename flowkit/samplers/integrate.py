"""Integrating a velocity field through torchdiffeq, with the NFE actually spent: the low-level helper of
straightness, likelihood and anything else that needs a plain ODE solve of v(x, t). (Sampling a trained
model goes through ``flowkit.samplers``, which also reads non-velocity networks.)

``solve(velocity_fn, x0, method=..., steps=... | rtol=..., atol=...)`` integrates dx/dt = v(x, t)
from t=0 (source) to t=1 (data). Adaptive methods take rtol/atol; fixed-step methods take a number
of uniform steps. One NFE is one call of ``velocity_fn`` on the batch. torchdiffeq warns about, but
does not refuse, options a method does not use; here they are an error.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor
from torchdiffeq import odeint

from flowkit.errors import ConfigError

ADAPTIVE = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED = ("euler", "midpoint", "heun2", "heun3", "rk4")
SOLVERS = ADAPTIVE + FIXED

VelocityFn = Callable[[Tensor, Tensor], Tensor]


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


def odeint_checked(f: Callable, y0: Any, times: Tensor, method: str, **options: float) -> Any:
    """torchdiffeq's ``odeint``, with an adaptive solver's failure to meet its tolerances (its step size
    underflowing) one ``ConfigError`` naming them instead of an ``AssertionError``."""
    try:
        return odeint(f, y0, times, method=method, **options)
    except AssertionError as exc:
        if "underflow in dt" not in str(exc):
            raise
        raise ConfigError(f"{method} cannot meet rtol={options.get('rtol'):g}, atol={options.get('atol'):g}: its step "
                          f"size underflowed; loosen the tolerances (float32 resolves about 1e-7 relative)") from None


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

    states = odeint_checked(f, x0, times, method, **options)
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
