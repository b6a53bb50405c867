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


@torch.no_grad()
def solve(
    velocity_fn: VelocityFn,
    x0: Tensor,
    method: str = "dopri5",
    steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    trajectory: bool = False,
) -> tuple[Tensor, int]:
    """Integrate from t=0 to t=1; returns (x1, nfe), or (states at each step, nfe) with ``trajectory``."""
    if method in FIXED:
        if steps is None or steps < 1:
            raise ConfigError(f"solver '{method}' needs steps >= 1; got {steps}")
        times = torch.linspace(0.0, 1.0, steps + 1, device=x0.device, dtype=x0.dtype)
        options = {}
    elif method in ADAPTIVE:
        if steps is not None:
            raise ConfigError(f"solver '{method}' is adaptive and takes no step count; set rtol/atol")
        times = torch.tensor([0.0, 1.0], device=x0.device, dtype=x0.dtype)
        options = {"rtol": rtol, "atol": atol}
    else:
        raise ConfigError(f"unknown solver '{method}'; valid: {', '.join(SOLVERS)}")

    nfe = 0

    def f(t: Tensor, x: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        return velocity_fn(x, t.expand(x.shape[0]))

    states = odeint(f, x0, times, method=method, **options)
    return (states if trajectory else states[-1]), nfe
