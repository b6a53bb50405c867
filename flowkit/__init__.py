"""flowkit: flow-matching training and distillation on shared paths, couplings, trainer and solvers.

The Python API (``flowkit/interface/api.py``): ``train``, ``load`` (a ``Flow``: ``sample``, ``invert``, ``velocity``,
``log_prob``), ``compare``, ``catalogue`` (what ``flowkit list`` shows); the error every bad input raises,
``ConfigError``; and every pluggable kind's registry, base class and ``register_*`` decorator, so a notebook can
register a unit and train with it in the same process:

    import flowkit

    @flowkit.register_path("quadratic")
    class Quadratic(flowkit.AffinePath): ...

    run = flowkit.train("rectified", path="quadratic", trainer={"max_steps": 500})

Names are imported on first use, so ``import flowkit`` (and the CLI's ``--help``) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # the API
    **dict.fromkeys(("train", "load", "compare", "Run", "Flow", "catalogue", "Entry"), "flowkit.interface.api"),
    "ConfigError": "flowkit.errors", "ContractError": "flowkit.errors", "TrainingError": "flowkit.errors",
    # each pluggable kind: registry, base class (where it has one), decorator
    "PATHS": "flowkit.paths", "AffinePath": "flowkit.paths", "register_path": "flowkit.paths",
    "COUPLINGS": "flowkit.couplings", "Coupling": "flowkit.couplings", "register_coupling": "flowkit.couplings",
    "TIME_SAMPLERS": "flowkit.timesteps", "register_time_sampler": "flowkit.timesteps",
    "METHODS": "flowkit.methods", "Method": "flowkit.methods", "register_method": "flowkit.methods",
    "SAMPLERS": "flowkit.samplers", "Sampler": "flowkit.samplers", "register_sampler": "flowkit.samplers",
    "GRIDS": "flowkit.samplers.grids", "register_grid": "flowkit.samplers.grids",
    "MODELS": "flowkit.models", "register_model": "flowkit.models",
    "DATASETS": "flowkit.data", "Dataset": "flowkit.data", "register_dataset": "flowkit.data",
    "ENCODERS": "flowkit.data.encoders", "Encoder": "flowkit.data.encoders", "register_encoder": "flowkit.data.encoders",
    "FEATURES": "flowkit.metrics.features", "register_features": "flowkit.metrics.features",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'flowkit' has no attribute '{name}'")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
