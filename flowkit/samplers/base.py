"""The sampler contract: ``sampler(model, x0, ts, *, cond=None) -> (x1, nfe)``, and how a run samples.

A sampler derives from ``Sampler``; its ``__init__`` takes its options (``rtol``/``atol`` for adaptive
ones, given by the caller; others from the method's ``sampler_options``), its ``__call__`` integrates
from the source batch ``x0`` at t=0 to t=1 on the grid ``ts`` (``flowkit.grids``; ``[0, 1]`` for an
adaptive sampler) and returns the samples and the NFE spent. It declares, with defaults:

    ``ode = True``        it solves the velocity ODE (or SDE), so any method whose network is a velocity
                          field may use it; ``False``: only methods that name it in their ``samplers``.
    ``adaptive = False``  it chooses its own steps: the spec takes no step count (``dopri5``, not ``euler:8``).

``model`` is a ``Predictor``: the network read through its method's ``predictor``, converted by the
path to whatever the sampler asks for (velocity, x1, x0, score); each call is one NFE (classifier-free
guidance included: one batched call). Register with ``@register_sampler("name")`` or the entry-point
group ``flowkit.samplers``. A spec names one algorithm: ``euler:8`` is 8 Euler steps of the velocity ODE.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch import Tensor, nn

from flowkit.conditioning import Cond, guided
from flowkit.errors import ConfigError, ContractError
from flowkit.grids import grid_times
from flowkit.models.network import network_inputs
from flowkit.paths import AffinePath
from flowkit.registry import Registry


class Predictor:
    """A trained network as samplers see it: ``model(x, t, cond, **inputs)`` is its raw ``kind`` prediction
    (counted: one call, one NFE), and ``predict(kind, ...)`` any other through the path."""

    def __init__(self, fn: Callable[..., Tensor], kind: str, path: AffinePath, takes_w: bool = False) -> None:
        self.fn, self.kind, self.path, self.takes_w = fn, kind, path, takes_w
        self.nfe = 0

    @classmethod
    def of(cls, method: Any, net: nn.Module, path: AffinePath) -> Predictor:
        """``net`` as its ``method`` reads it (``Method.predictor``)."""
        fn, kind = method.predictor(net)
        return cls(fn, kind, path, takes_w="guidance" in network_inputs(net))

    def velocity_field(self, cond: Cond | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """v(x, t) under ``cond``: what ODE helpers (straightness, likelihood) integrate."""
        return lambda x, t: self.velocity(x, t, cond)

    def __call__(self, x: Tensor, t: Tensor, cond: Cond | None = None, **inputs: Tensor) -> Tensor:
        self.nfe += 1
        if cond is None:
            return self.fn(x, t, **inputs)
        labels = cond.labels[: x.shape[0]].to(x.device)
        if cond.guidance is None and not self.takes_w:
            return self.fn(x, t, cond=labels, **inputs)
        w = torch.full((x.shape[0],), 1.0 if cond.guidance is None else cond.guidance, device=x.device, dtype=x.dtype)
        return guided(self.fn, x, t, labels=labels, w=w, null=cond.null, takes_w=self.takes_w, **inputs)

    def predict(self, kind: str, x: Tensor, t: Tensor, cond: Cond | None = None, **inputs: Tensor) -> Tensor:
        return self.path.convert(self(x, t, cond, **inputs), x, t, self.kind, kind)

    def velocity(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> Tensor:
        return self.predict("velocity", x, t, cond)

    def endpoints(self, x: Tensor, t: Tensor, cond: Cond | None = None) -> tuple[Tensor, Tensor]:
        """(x0_hat, x1_hat): the source and data points the prediction at (x, t) implies."""
        return self.path.endpoints(self(x, t, cond), x, t, self.kind)


class Sampler:
    """Base class of every sampler (module docstring)."""

    ode: bool = True
    adaptive: bool = False

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        raise NotImplementedError(f"{type(self).__name__} defines no sampling")


def check_sampler(name: str, obj: object) -> None:
    """The registration check: a ``Sampler`` subclass, its declarations booleans."""
    if not (inspect.isclass(obj) and issubclass(obj, Sampler)):
        raise ContractError(f"sampler '{name}': {obj!r} does not derive from flowkit.samplers.Sampler")
    if not isinstance(obj.ode, bool) or not isinstance(obj.adaptive, bool):
        raise ContractError(f"sampler '{name}': ode and adaptive must be True or False")


SAMPLERS: Registry = Registry("sampler", "flowkit.samplers", check=check_sampler,
                              injectable=frozenset({"rtol", "atol", "path"}))
register_sampler = SAMPLERS.register


MAX_STEPS = 1_000_000  # a fixed-step sampler's step count; beyond it a run never ends (and its grid needs GBs)


def parse_sampler(spec: str) -> tuple[str, int | None]:
    """'euler:8' -> ('euler', 8); 'dopri5' -> ('dopri5', None); a bad name or step count is a ConfigError."""
    name, colon, steps = str(spec).strip().partition(":")
    factory = SAMPLERS.get(name)
    if factory.adaptive:
        if colon:
            raise ConfigError(f"sampler '{spec}': '{name}' chooses its own steps and takes no step count "
                              "(set rtol/atol)")
        return name, None
    if not steps.isdigit() or not 1 <= int(steps) <= MAX_STEPS:
        raise ConfigError(f"sampler '{spec}': '{name}' needs a step count in [1, {MAX_STEPS:,}], e.g. '{name}:4' "
                          f"(for a reference solution use an adaptive sampler such as dopri5 with a small rtol)")
    return name, int(steps)


def supports(method: Any, name: str) -> bool:
    """Whether ``method`` can be sampled with sampler ``name`` (its declared samplers, or any ODE sampler
    when its network is a velocity field)."""
    return name in method.samplers or (method.ode and SAMPLERS.get(name).ode)


def why_not(method: Any, method_name: str, name: str) -> str | None:
    """None when ``method`` supports sampler ``name``, else one sentence saying why and what it supports."""
    if supports(method, name):
        return None
    own = ", ".join(method.samplers) or "none"
    if method.ode:
        return f"sampler '{name}' is not one of method '{method_name}''s; it samples with any ODE sampler and: {own}"
    return (f"sampler '{name}' solves the velocity ODE, which method '{method_name}' does not define; "
            f"its samplers: {own}")


def check_samplers(method: Any, method_name: str, specs: list[str]) -> None:
    """Refuse (ConfigError) any spec that is malformed or that ``method`` cannot sample with."""
    for spec in specs:
        reason = why_not(method, method_name, parse_sampler(spec)[0])
        if reason:
            raise ConfigError(reason)


@torch.no_grad()
def sample_with(method: Any, net: nn.Module, path: AffinePath, x0: Tensor, spec: str, *, grid: str = "uniform",
                cond: Cond | None = None, rtol: float = 1e-5, atol: float = 1e-5,
                method_name: str = "this") -> tuple[Tensor, int]:
    """Samples of ``net`` (trained by ``method`` on ``path``) from ``x0`` with sampler ``spec`` on ``grid``:
    (x1, the NFE counted)."""
    name, steps = parse_sampler(spec)
    reason = why_not(method, method_name, name)
    if reason:
        raise ConfigError(reason)
    sampler = SAMPLERS.build({"name": name, **method.sampler_options(name)}, rtol=rtol, atol=atol, path=path)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64) if sampler.adaptive else grid_times(grid, path, steps)
    model = Predictor.of(method, net, path)
    x1, _ = sampler(model, x0, ts.to(x0.device, x0.dtype), cond=cond)
    return x1, model.nfe
