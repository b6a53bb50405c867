"""Time grids: where a fixed-step sampler evaluates the model, chosen per sampling call (``grid=``).

A grid is a function ``(path, steps) -> ts``: ``steps + 1`` increasing times from t=0 (source) to t=1
(data). Register your own with ``@register_grid("name")`` or the entry-point group ``flowkit.grids``.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import Tensor

from flowkit.errors import ContractError
from flowkit.paths import AffinePath
from flowkit.registry import Registry

Grid = Callable[[AffinePath, int], Tensor]


def check_grid(name: str, obj: object) -> None:
    """The registration check: a function of (path, steps)."""
    if not callable(obj) or inspect.isclass(obj) or len(inspect.signature(obj).parameters) != 2:
        raise ContractError(f"grid '{name}': {obj!r} is not a function of (path, steps)")


GRIDS: Registry = Registry("grid", "flowkit.grids", check=check_grid)
register_grid = GRIDS.register


@register_grid("uniform")
def uniform(path: AffinePath, steps: int) -> Tensor:
    """Uniform in t: t_k = k / steps."""
    return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)


def grid_times(name: str, path: AffinePath, steps: int) -> Tensor:
    """The checked grid (float64 on the CPU): ``steps + 1`` times, increasing, from 0 to 1."""
    ts = torch.as_tensor(GRIDS.get(name)(path, steps), dtype=torch.float64)
    if ts.shape != (steps + 1,) or not (ts[1:] > ts[:-1]).all() or ts[0] != 0 or ts[-1] != 1:
        raise ContractError(f"grid '{name}' gave {ts.tolist()[:6]}... for {steps} steps; expected {steps + 1} "
                            "increasing times from 0 to 1")
    return ts
