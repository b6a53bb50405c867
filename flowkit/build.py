"""Recipe -> objects: the one place a config dict becomes data, model, path, coupling and method."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn

from flowkit.couplings import COUPLINGS
from flowkit.data import LABELLED, Distribution, build_pair, num_classes
from flowkit.methods import METHODS
from flowkit.errors import ConfigError
from flowkit.models import MODELS
from flowkit.models.parameterisation import AsVelocity
from flowkit.paths import PATHS, AffinePath
from flowkit.timesteps import TIME_SAMPLERS


@dataclass
class Parts:
    source: Distribution
    target: Distribution
    model: nn.Module
    path: AffinePath
    coupling: Any
    method: Any
    classes: int = 0  # > 0: a class-conditional model (cond.labels=true) over this many classes


def build_parts(cfg: dict[str, Any], with_coupling: bool = True) -> Parts:
    """Build every unit a recipe names; raises ``ConfigError`` on any bad name or option.

    ``model.init_from`` (a checkpoint or run dir) starts the network from that run's EMA weights,
    e.g. a student from its teacher; the checkpoint must hold the same architecture. A method whose
    network takes other inputs says so in ``model_options`` (MeanFlow: ``{"times": 2}``); they are
    merged into the model's options, and a recipe that sets them otherwise is an error.
    """
    d = cfg["data"]
    source, target = build_pair(d["source"], d["target"], d["path"])
    path = PATHS.build(cfg["path"])
    time_sampler = TIME_SAMPLERS.build(cfg["time"])
    classes = conditioning_classes(cfg, target)
    method = METHODS.build(cfg["method"], path=path, time_sampler=time_sampler, data_shape=target.shape,
                           total_steps=cfg["trainer"]["max_steps"], classes=classes)
    model_spec = with_method_options(dict(cfg["model"]), method, cfg["method"]["name"])
    if classes:
        model_spec["num_classes"] = classes
    elif getattr(method, "needs_labels", False):
        raise ConfigError(f"method '{cfg['method']['name']}' with these options needs class labels: cond.labels=true")
    prediction = model_spec.pop("prediction", "velocity")  # what the network outputs; see AsVelocity
    init_from = model_spec.pop("init_from", None)
    model = MODELS.build(model_spec, data_shape=target.shape)
    if init_from:
        load_weights(model, init_from, target.shape)
    if prediction != "velocity":
        try:
            model = AsVelocity(model, path, prediction)
        except ValueError as exc:
            raise ConfigError(f"model.{exc}") from None
    return Parts(
        source=source,
        target=target,
        model=model,
        path=path,
        coupling=coupling_for(cfg, target, classes) if with_coupling else None,
        method=method,
        classes=classes,
    )


def coupling_for(cfg: dict[str, Any], target: Distribution, classes: int) -> Any:
    coupling = COUPLINGS.build(cfg["coupling"], data_shape=target.shape)
    if classes and "y" not in inspect.signature(coupling).parameters:
        raise ConfigError(f"coupling '{cfg['coupling']['name']}' takes no labels; class-conditional training "
                          "(cond.labels=true) needs one that keeps them: independent, ot or sinkhorn")
    return coupling


def conditioning_classes(cfg: dict[str, Any], target: Distribution) -> int:
    """How many classes the model is conditioned on: the target's, with ``cond.labels=true``; else 0."""
    if not cfg.get("cond", {}).get("labels", False):
        return 0
    classes = num_classes(target)
    if not classes:
        raise ConfigError(f"cond.labels=true, but data.target '{cfg['data']['target']}' has no labels; "
                          f"labelled targets: {', '.join(LABELLED)}")
    if "num_classes" in cfg["model"] and cfg["model"]["num_classes"] != classes:
        raise ConfigError(f"model.num_classes={cfg['model']['num_classes']} but the target has {classes} classes")
    return classes


def with_method_options(model_spec: dict[str, Any], method: Any, method_name: str) -> dict[str, Any]:
    for key, value in getattr(method, "model_options", {}).items():
        if model_spec.setdefault(key, value) != value:
            raise ConfigError(f"model.{key}={model_spec[key]!r} does not fit method '{method_name}', "
                              f"which needs model.{key}={value!r}")
    return model_spec


def load_weights(model: nn.Module, path: str, data_shape: tuple[int, ...]) -> None:
    from flowkit.checkpoint import ema_weights
    from flowkit.teacher import read_matching

    weights = ema_weights(read_matching(path, data_shape)[1])
    try:
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ConfigError(f"model.init_from='{path}': its network does not fit this model ({first})") from None
    # a guided-distillation student adds a guidance embedding (zero-initialised) to its teacher's network
    missing = [k for k in missing if ".guidance." not in k]
    if missing or unexpected:
        raise ConfigError(f"model.init_from='{path}': its network does not fit this model "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
