"""The method contract, and conditional flow matching (``cfm``), the method every other builds on.

A method is a class deriving from ``Method``. It owns one thing the trainer cannot guess, a per-sample
loss with no side effects, ``loss(model, batch) -> {"loss": (batch,) tensor, ...}`` (the trainer reduces
and logs every term; ``batch`` holds the coupled pair ``x0``, ``x1``, the labels ``y`` when the run is
class-conditional, and the training ``step``). Its ``__init__`` takes hyperparameters, plus any of
``path``, ``time_sampler``, ``data_shape``, ``total_steps`` and ``classes`` it asks for by name. A distiller
asks for a teacher by annotating a parameter ``flowkit.teacher.Teacher``: flowkit builds it from the option's
text (a run, ``package.module:name`` or ``FILE.pt2``) and ``teacher.on(device)`` is the frozen teacher read
on this method's path (``flowkit.teacher``).

Everything else is declared, with a default, on the class:

capabilities (class attributes, or properties when they depend on hyperparameters)
    ``inputs``        what the network takes besides (x, t), by keyword: a mapping of keyword ->
                      ``flowkit.models.Input(kind, ...)`` (a time-like scalar, an interval to an end time,
                      a zero-initialised scalar, a class index, a vector), or the built-in names ``"t_end"``
                      (an end time) and ``"guidance"`` (a guidance weight, keyword ``w``); flowkit composes
                      them onto the registered backbone (``flowkit.models.network``).
    ``needs_labels``  training without ``cond.labels=true`` is refused.
    ``ode``           the network, read through ``predictor``, is a velocity field: every sampler of the
                      velocity ODE applies, and so do straightness and likelihood.
    ``samplers``      further samplers (registered names) this method supports; with ``ode = False``, its
                      only ones.
    ``classifier``    the network is a classifier of noisy data, (x_t, t) -> logits over the run's classes
                      (its predictor's kind is ``"logits"``): the labels reach the loss, never the network
                      (a backbone that asks for ``classes`` is told how many); the run is not sampled but
                      reports its accuracy along the path, and guides other runs of its path
                      (``classifier=RUN``, ``flowkit.config.guidance``). Requires ``ode = False``.

hooks (methods; override what you need)
    ``predictor(net)``          (function of (x, t, **inputs), what it predicts: velocity, x1, x0 or score);
                                samplers convert through the path. Default: the network, a velocity.
    ``sampler_options(name)``   options the method passes to a sampler it supports (e.g. how to re-noise).
    ``networks()``              further networks the method trains, each with its AdamW options; the
                                trainer moves, optimises (on the run's schedule) and checkpoints them. Only
                                the model's weights are averaged (EMA) unless a network's options say
                                ``"ema": True``. Declared as ``networks(self, model)`` it is given the model
                                first (built, ``model.init_from`` loaded; e.g. to start a network as its copy).
    ``training_step(steps, batch)``  the method's own optimisation of a step (``Steps`` below);
                                required with ``networks()``, unused otherwise.
    ``setup(model)``            once, before the first step, with the network on its device.
    ``after_step(model, step)`` after every optimiser step of the model (e.g. a target network's EMA);
                                ``step`` counts the steps taken.
    ``state_dict()`` / ``load_state_dict(state)``  the method's own training state, checkpointed.
    ``next_round(config, run_dir)``  (a classmethod) the config update for one more run after this one,
                                or None.

A capability the base class does not declare is an error when the method is registered, naming the
valid ones (constants in UPPER_CASE are the method's own); so is a method whose name is one letter from a hook's.
"""

from __future__ import annotations

import difflib
import inspect
from pathlib import Path
from typing import Any, Callable, Protocol

from torch import Tensor, nn

from flowkit.conditioning import cond_of
from flowkit.errors import ContractError
from flowkit.models.network import Input, declared
from flowkit.paths import AffinePath
from flowkit.registry import Registry


CAPABILITIES = ("inputs", "needs_labels", "ode", "samplers", "classifier")
HOOKS = ("loss", "predictor", "sampler_options", "networks", "training_step", "setup", "after_step", "state_dict",
         "load_state_dict", "next_round")


class Steps(Protocol):
    """What a method's own ``training_step`` drives (the trainer implements it: ``flowkit.training.steps``).

    ``step(name, compute)`` runs one optimiser step of the network ``name`` ("model", or one of ``networks()``)
    on the loss terms ``compute()`` returns (None: no step). Only that network's parameters take gradients
    meanwhile; the step is reduced, logged, watched for non-finite values and clipped as any other, and stepped
    with its own schedule. Only the model's steps count as training steps (max_steps, checkpoints and seeds keep
    their meaning), and after each the method's ``after_step`` runs. ``model`` is the network being trained,
    ``networks`` the method's further networks by name, ``loss`` the method's loss (compiled when
    ``trainer.compile`` asks)."""

    model: nn.Module
    networks: dict[str, nn.Module]
    loss: Callable[[nn.Module, dict[str, Any]], dict[str, Tensor]]

    def step(self, name: str, compute: Callable[[], dict[str, Tensor] | None]) -> Tensor | None: ...


class Method:
    """Base class of every training method (module docstring: capabilities and hooks)."""

    inputs: tuple[str, ...] | dict[str, Input] = ()
    needs_labels: bool = False
    ode: bool = True
    samplers: tuple[str, ...] = ()
    classifier: bool = False

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} defines no loss")

    def predictor(self, net: nn.Module) -> tuple[Callable[..., Tensor], str]:
        return net, "velocity"

    def sampler_options(self, sampler: str) -> dict[str, Any]:
        return {}

    def networks(self) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
        return {}

    def training_step(self, steps: Steps, batch: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} trains further networks but defines no training_step")

    def setup(self, model: nn.Module) -> None:
        pass

    def after_step(self, model: nn.Module, step: int) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    @classmethod
    def next_round(cls, config: dict[str, Any], run_dir: Path) -> dict[str, Any] | None:
        return None


def check_method(name: str, obj: Any) -> None:
    """The registration check: ``obj`` derives from ``Method``, declares only known capabilities with
    values of the right kind, and no method of its is one slip from a hook's name."""
    if not (inspect.isclass(obj) and issubclass(obj, Method)):
        raise ContractError(f"method '{name}': {obj!r} does not derive from flowkit.methods.Method")
    for klass in obj.__mro__:
        if klass is Method or klass is object:
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_") or attr in CAPABILITIES or attr in HOOKS or attr.isupper():
                continue  # UPPER_CASE names are the class's own constants (EPS = 1e-4), not declarations
            if isinstance(value, property) or not (callable(value) or isinstance(value, (staticmethod, classmethod))):
                valid = ", ".join(CAPABILITIES)
                close = difflib.get_close_matches(attr, CAPABILITIES, n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ContractError(f"method '{name}' declares unknown capability '{attr}'; valid: {valid}{hint}")
            close = difflib.get_close_matches(attr, HOOKS, n=1, cutoff=0.85)
            if close:
                raise ContractError(f"method '{name}' defines '{attr}', which is not a hook (did you mean "
                                  f"'{close[0]}'?); hooks: {', '.join(HOOKS)}")
    check_capabilities(name, obj)


def check_capabilities(name: str, method: Any) -> None:
    """The declared values, on the class (at registration) or on a built method (properties resolved)."""
    values = {cap: getattr(method, cap) for cap in CAPABILITIES}
    if any(isinstance(v, property) for v in values.values()):
        return  # declared by a property: checked once the method is built
    inputs, samplers = values["inputs"], values["samplers"]
    try:
        declared(inputs)
    except ValueError as exc:
        raise ContractError(f"method '{name}': {exc}") from None
    if not isinstance(samplers, (tuple, list)) or not all(isinstance(s, str) for s in samplers):
        raise ContractError(f"method '{name}': samplers={samplers!r}; expected a tuple of sampler names")
    for cap in ("needs_labels", "ode", "classifier"):
        if not isinstance(values[cap], bool):
            raise ContractError(f"method '{name}': {cap}={values[cap]!r}; expected True or False")
    if values["classifier"] and (values["ode"] or samplers or not values["needs_labels"]):
        raise ContractError(f"method '{name}': a classifier (classifier=True) is not sampled and learns labels: "
                            f"declare ode = False, no samplers and needs_labels = True")
    if not values["ode"] and not samplers and not values["classifier"]:
        raise ContractError(f"method '{name}': ode=False and no samplers: it could never be sampled")
    cls = method if inspect.isclass(method) else type(method)
    required = [p for p in _network_parameters(cls)
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if len(required) > 1:
        raise ContractError(f"method '{name}': networks takes {', '.join(p.name for p in required)}; expected "
                            "networks(self) or networks(self, model)")
    if cls.networks is not Method.networks and cls.training_step is Method.training_step:
        raise ContractError(f"method '{name}' trains further networks (networks()) but defines no training_step")


METHODS: Registry = Registry("method", "flowkit.methods", check=check_method)
register_method = METHODS.register


def method_networks(method: Method, model: nn.Module) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
    """``method.networks()``, or ``method.networks(model)`` where the hook takes the model."""
    return method.networks(model) if _takes_model(type(method)) else method.networks()


def _network_parameters(cls: type) -> list[inspect.Parameter]:
    """The parameters of ``cls.networks`` after ``self`` (none where the signature cannot be read)."""
    try:
        return list(inspect.signature(cls.networks).parameters.values())[1:]
    except (TypeError, ValueError):
        return []


def _takes_model(cls: type) -> bool:
    parameters = _network_parameters(cls)
    return bool(parameters) and parameters[0].kind in (parameters[0].POSITIONAL_ONLY, parameters[0].POSITIONAL_OR_KEYWORD)


def per_sample_mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean of (a - b)^2 over every dimension but the batch: shape (batch,)."""
    return (a - b).pow(2).flatten(1).mean(1)


@register_method("cfm")
class CFM(Method):
    """Conditional flow matching (Lipman et al. 2023, eq. 9; Tong et al. 2024, eq. 13).

        t ~ time_sampler,  x_t = alpha(t) x1 + sigma(t) x0,  u_t = alpha'(t) x1 + sigma'(t) x0
        L(theta) = || v_theta(x_t, t) - u_t ||^2      (per sample, mean over data dimensions)

    Which pairs (x0, x1) are drawn is the coupling's business (independent: I-CFM; minibatch OT:
    OT-CFM); which alpha/sigma, the path's.
    """

    def __init__(self, path: AffinePath, time_sampler) -> None:
        self.path = path
        self.time_sampler = time_sampler

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x0, x1 = batch["x0"], batch["x1"]
        t = self.time_sampler(x1.shape[0], x1.device).to(x1.dtype)
        x_t = self.path.sample(x0, x1, t)
        return {"loss": per_sample_mse(model(x_t, t, **cond_of(batch)), self.path.target(x0, x1, t))}
