"""The sampler contract: ``sampler(model, x0, ts, *, cond=None) -> (x1, nfe)``, and how a run samples.

A sampler derives from ``Sampler``; its ``__init__`` takes its options (``rtol``/``atol`` for adaptive
ones, given by the caller; others from the method's ``sampler_options`` and from the spec), its ``__call__``
integrates from the batch ``x0`` at ``ts[0]`` to ``ts[-1]`` on the grid ``ts`` (``flowkit.grids``; ``[0, 1]``
for an adaptive sampler) and returns the samples and the NFE spent. Sampling runs from t=0 (source) to t=1
(data); inversion (``invert_with``) calls the same sampler on the reversed grid, from 1 to 0. It declares,
with defaults:

    ``ode = True``          it solves the velocity ODE (or SDE), so any method whose network is a velocity
                            field may use it; ``False``: only methods that name it in their ``samplers``.
    ``adaptive = False``    it chooses its own steps: the spec takes no step count (``dopri5``, not ``euler:8``).
    ``default_grid = "uniform"``  the time grid (``flowkit.grids``) a fixed-step spec runs on when the caller
                            names none: the grid on which the sampler reaches its order.
    ``stochastic = False``  it draws noise and reads the score of p_t (reverse SDEs, DDIM with eta > 0,
                            EDM's churn). The path gives the score from the model's prediction (Tweedie) only
                            for an independent standard-normal source, so runs on other sources or couplings
                            are refused; it cannot invert. May be set per instance (``ddim`` with ``eta=0``).

``model`` is a ``Predictor``: the network read through its method's ``predictor``, converted by the
path to whatever the sampler asks for (velocity, x1, x0, score); each call is one NFE (classifier-free
guidance included: one batched call). Register with ``@register_sampler("name")`` or the entry-point
group ``flowkit.samplers``. A spec names one algorithm and its options: ``euler:8`` is 8 Euler steps of
the velocity ODE, ``ddim:10:eta=1`` 10 DDIM steps with eta = 1 (``name[:steps][:key=value]...``).
"""

from __future__ import annotations

import difflib

import inspect
from typing import Any, Callable

import torch
from torch import Tensor, nn

from flowkit.conditioning import Cond, guided
from flowkit.errors import ConfigError, ContractError
from flowkit.samplers.grids import grid_times
from flowkit.models.network import network_inputs
from flowkit.paths import AffinePath
from flowkit.registry import Registry


class Predictor:
    """A trained network as samplers see it: ``model(x, t, cond, **inputs)`` is its raw ``kind`` prediction
    (counted: one call, one NFE), and ``predict(kind, ...)`` any other through the path."""

    def __init__(self, fn: Callable[..., Tensor], kind: str, path: AffinePath, takes_w: bool = False) -> None:
        self.fn, self.kind, self.path, self.takes_w = fn, kind, path, takes_w
        self.nfe = 0
        self.on_call: Callable[[int], None] | None = None  # told the count after every call (progress reports)

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
        if self.nfe > MAX_NFE:  # what a sampler's own nfe() did not say in advance (an adaptive solver, a loop)
            raise ConfigError(f"sampling stopped after {MAX_NFE:,} network evaluations, the most one draw may take; "
                              f"use fewer steps, or looser tolerances for an adaptive sampler")
        raw = self._raw(x, t, cond, **inputs)
        if self.on_call is not None:
            self.on_call(self.nfe)
        if cond is not None and cond.classifier is not None:  # classifier guidance: the score moves by s grad log p
            labels = cond.labels[: x.shape[0]].to(x.device)
            raw = raw + self.path.score_gain(x, t, self.kind) * cond.classifier.shift(x, t, labels)
        return raw

    def _raw(self, x: Tensor, t: Tensor, cond: Cond | None, **inputs: Tensor) -> Tensor:
        if cond is None or not cond.null:  # no labels, or a model that takes none (guided by a classifier only)
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


def deterministic(path: AffinePath) -> str:
    """The registered samplers of the velocity ODE that draw no noise with their default options (what the
    registry says, for messages that offer one)."""
    names = []
    for name, cls in SAMPLERS.items():
        if not cls.ode:
            continue
        try:
            if not SAMPLERS.build({"name": name}, rtol=1e-5, atol=1e-5, path=path).stochastic:
                names.append(name)
        except ConfigError:  # a sampler that needs options to be built: not offered
            continue
    return ", ".join(names)



class Sampler:
    """Base class of every sampler (module docstring)."""

    ode: bool = True
    adaptive: bool = False
    stochastic: bool = False
    per_step: int | None = None  # network evaluations a step takes at most (None: not said)
    default_grid: str = "uniform"  # the grid of a call that names none (module docstring)

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        raise NotImplementedError(f"{type(self).__name__} defines no sampling")

    def nfe(self, steps: int | None) -> int | None:
        """The most network evaluations one draw on a grid of ``steps`` steps takes, known before it runs
        (``per_step`` a step by default; a step that touches an end of the path may take fewer): checked against
        ``MAX_NFE`` before sampling and shown as an evaluation's planned cost. None where the sampler cannot say
        (adaptive ones)."""
        return None if steps is None or self.per_step is None else self.per_step * steps


DECLARATIONS = ("ode", "adaptive", "stochastic")


def check_sampler(name: str, obj: object) -> None:
    """The registration check: a ``Sampler`` subclass that defines ``__call__``, its declarations booleans (a
    property may decide ``stochastic`` from the options), and no attribute one slip from a declaration."""
    if not (inspect.isclass(obj) and issubclass(obj, Sampler)):
        raise ContractError(f"sampler '{name}': {obj!r} does not derive from flowkit.samplers.Sampler")
    if obj.__call__ is Sampler.__call__:
        raise ContractError(f"sampler '{name}': {obj.__name__} defines no __call__(model, x0, ts, *, cond=None) "
                            f"-> (x1, nfe)")
    if not all(isinstance(getattr(obj, flag), (bool, property)) for flag in DECLARATIONS):
        raise ContractError(f"sampler '{name}': ode, adaptive and stochastic must be True or False")
    if not (isinstance(obj.default_grid, str) and obj.default_grid.strip()):
        raise ContractError(f"sampler '{name}': default_grid must name a grid (e.g. 'uniform'), not "
                            f"{obj.default_grid!r}")
    for klass in obj.__mro__[: obj.__mro__.index(Sampler)]:
        for attr in vars(klass):
            close = difflib.get_close_matches(attr, DECLARATIONS, n=1, cutoff=0.85)
            if not attr.startswith("_") and attr not in DECLARATIONS and close:
                raise ContractError(f"sampler '{name}' declares '{attr}', which is not a declaration (did you mean "
                                    f"'{close[0]}'?); declarations: {', '.join(DECLARATIONS)}")


SAMPLERS: Registry = Registry("sampler", "flowkit.samplers", check=check_sampler,
                              injectable=frozenset({"rtol", "atol", "path"}))
register_sampler = SAMPLERS.register


MAX_STEPS = 1_000_000  # a fixed-step sampler's step count; beyond it a run never ends (and its grid needs GBs)
MAX_NFE = 10_000_000  # network evaluations of one draw (steps times a step's evaluations, corrector steps too)


def _option_value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def sampler_spec(spec: str) -> tuple[str, int | None, dict[str, Any]]:
    """'ddim:10:eta=0.5' -> ('ddim', 10, {'eta': 0.5}); 'dopri5' -> ('dopri5', None, {}). A bad name, step count
    or option is a ConfigError naming the valid ones."""
    name, *fields = str(spec).strip().split(":")
    factory = SAMPLERS.get(name)
    steps = fields.pop(0) if fields and "=" not in fields[0] else None
    if factory.adaptive and steps is not None:
        raise ConfigError(f"sampler '{spec}': '{name}' chooses its own steps and takes no step count "
                          "(set rtol/atol)")
    if not factory.adaptive and (steps is None or not (steps.isascii() and steps.isdigit()) or not 1 <= int(steps) <= MAX_STEPS):
        raise ConfigError(f"sampler '{spec}': '{name}' needs a step count in [1, {MAX_STEPS:,}], e.g. '{name}:4' "
                          f"(for a reference solution use an adaptive sampler such as dopri5 with a small rtol)")
    options = {}
    for field in fields:
        key, eq, value = field.partition("=")
        if not eq or not key or not value:
            raise ConfigError(f"sampler '{spec}': '{field}' is not key=value (e.g. '{name}:10:eta=1')")
        options[key] = _option_value(value)
    if options:
        SAMPLERS.build({"name": name, **options})  # checks the option names and types now, not mid-run
    return name, None if steps is None else int(steps), options


def grid_of(spec: str, grid: str | None) -> str | None:
    """The grid a call of sampler ``spec`` on ``grid`` runs on: ``grid``, else the sampler's ``default_grid``; None
    for an adaptive sampler, which picks its own times."""
    return _grid_name(SAMPLERS.get(sampler_spec(spec)[0]), grid)


def _grid_name(sampler: Sampler | type[Sampler], grid: str | None) -> str | None:
    return None if sampler.adaptive else grid or sampler.default_grid


def parse_sampler(spec: str) -> tuple[str, int | None]:
    """'euler:8' -> ('euler', 8); 'dopri5' -> ('dopri5', None); a bad name, step count or option is a ConfigError."""
    return sampler_spec(spec)[:2]


def supports(method: Any, name: str) -> bool:
    """Whether ``method`` can be sampled with sampler ``name`` (its declared samplers, or any ODE sampler
    when its network is a velocity field)."""
    return name in method.samplers or (method.ode and SAMPLERS.get(name).ode)


def why_not(method: Any, method_name: str, name: str) -> str | None:
    """None when ``method`` supports sampler ``name``, else one sentence saying why and what it supports."""
    if supports(method, name):
        return None
    if getattr(method, "classifier", False):
        return (f"method '{method_name}' trains a classifier of noisy data: it is not sampled; it guides the "
                f"sampling of another run on its path (classifier=RUN classifier_scale=s)")
    own = ", ".join(method.samplers) or "none"
    if method.ode:
        return f"sampler '{name}' is not one of method '{method_name}''s; it samples with any ODE sampler and: {own}"
    return (f"sampler '{name}' solves the velocity ODE, which method '{method_name}' does not define; "
            f"its samplers: {own}")


def build_sampler(method: Any, path: AffinePath, spec: str, *, rtol: float = 1e-5, atol: float = 1e-5,
                  method_name: str = "this") -> tuple[Sampler, int | None]:
    """(the sampler a spec names, with the method's options under the spec's own; its step count), after
    checking that ``method`` can sample with it."""
    name, steps, options = sampler_spec(spec)
    reason = why_not(method, method_name, name)
    if reason:
        raise ConfigError(reason)
    spec_dict = {"name": name, **method.sampler_options(name), **options}
    sampler = SAMPLERS.build(spec_dict, rtol=rtol, atol=atol, path=path)
    planned = sampler.nfe(steps)
    if planned is not None and planned > MAX_NFE:
        raise ConfigError(f"sampler '{spec}' would take {planned:,} network evaluations a draw, more than "
                          f"{MAX_NFE:,}; use fewer steps or options that cost fewer")
    return sampler, steps


def times(sampler: Sampler, path: AffinePath, steps: int | None, grid: str | None) -> Tensor:
    """The grid a draw runs on: [0, 1] for an adaptive sampler, else ``grid`` (None: its ``default_grid``)."""
    name = _grid_name(sampler, grid)
    return torch.tensor([0.0, 1.0], dtype=torch.float64) if name is None else grid_times(name, path, steps)


@torch.no_grad()
def sample_with(method: Any, net: nn.Module, path: AffinePath, x0: Tensor, spec: str, *, grid: str | None = None,
                cond: Cond | None = None, rtol: float = 1e-5, atol: float = 1e-5,
                method_name: str = "this", progress: Callable[[int], None] | None = None) -> tuple[Tensor, int]:
    """Samples of ``net`` (trained by ``method`` on ``path``) from ``x0`` with sampler ``spec`` on ``grid`` (None:
    the sampler's ``default_grid``): (x1, the NFE counted; ``progress(nfe)`` after every network call). A
    stochastic sampler assumes an independent standard-normal source (see the module docstring;
    ``flowkit.config.build.Parts.sample`` checks it from the run's config)."""
    sampler, steps = build_sampler(method, path, spec, rtol=rtol, atol=atol, method_name=method_name)
    ts = times(sampler, path, steps, grid)
    model = Predictor.of(method, net, path)
    model.on_call = progress
    x1, _ = sampler(model, x0, ts.to(x0.device, x0.dtype), cond=cond)
    return x1, model.nfe


@torch.no_grad()
def invert_with(method: Any, net: nn.Module, path: AffinePath, x1: Tensor, spec: str, *, grid: str | None = None,
                cond: Cond | None = None, rtol: float = 1e-5, atol: float = 1e-5,
                method_name: str = "this") -> tuple[Tensor, int]:
    """Data -> source: the deterministic sampler ``spec`` run backwards on the reversed ``grid`` (None: its
    ``default_grid``; from t=1 to t=0), so that sampling the result with the same spec and grid returns ``x1`` up
    to the solver's error. (x0, the NFE counted)."""
    sampler, steps = build_sampler(method, path, spec, rtol=rtol, atol=atol, method_name=method_name)
    if sampler.stochastic or not type(sampler).ode:
        raise ConfigError(f"sampler '{spec}' cannot invert: inversion integrates the probability-flow ODE backwards, "
                          f"so it needs a deterministic ODE sampler ({deterministic(path)})")
    ts = times(sampler, path, steps, grid)
    model = Predictor.of(method, net, path)
    x0, _ = sampler(model, x1, ts.flip(0).to(x1.device, x1.dtype), cond=cond)
    return x0, model.nfe
