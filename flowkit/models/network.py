"""A registered backbone composed with the inputs that a method and a run need, and nothing else.

A backbone (``flowkit.models``) is ``v(x, t, emb=None)``, and declares ``emb_dim`` (the size of the
vector ``emb`` it adds to its own time embedding), ``time_dim`` and ``time_scale`` (the sinusoidal
features it embeds time with). ``Conditioned`` adds to it, only when asked, the inputs a method declares
(``Method.inputs``: names of the built-in ones, or a mapping of keyword -> ``Input``), each embedded into
a vector of ``emb_dim`` and summed into ``emb``:

    kind        embedding                                         without the keyword
    "time"      TimeMLP(value): a time-like scalar (a step size,  ``default`` (required if None)
                a second time, a noise level)
    "interval"  TimeMLP(value - t): an end time (a two-time       an interval of 0: the instantaneous
                network u(z, t, t_end) embeds the interval)       velocity
    "scalar"    TimeMLP(scale * value), zero-initialised when     ``default``
                ``zero_init``: a network started from one
                without it is that network
    "class"     nn.Embedding(size + 1): index ``size`` is null    the null class
    "vector"    Linear(size -> emb_dim)                           zeros

The two built-in names are such declarations: ``"t_end"`` is ``Input("interval")`` (keyword ``t_end``) and
``"guidance"`` is ``Input("scalar", scale=0.25, default=1.0, zero_init=True)`` (keyword ``w``, a guidance weight,
Meng et al. 2023). The run's labels (``classes`` > 0) are a class input of keyword ``cond`` (Ho & Salimans
2022; the null class is the unconditional model trained by label dropout). A network without any input is the
backbone itself. State-dict names: ``interval``, ``guidance`` and ``classes`` for those three (as every run
saved them), ``input_<name>`` for any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from flowkit.errors import ConfigError
from flowkit.models.embeddings import TimeMLP, zeroed

KINDS = ("time", "interval", "scalar", "class", "vector")


@dataclass(frozen=True)
class Input:
    """A network input beyond (x, t), passed by keyword, and how it is embedded (module docstring)."""

    kind: str
    size: int = 0  # "class": the number of classes; "vector": its length
    scale: float = 1.0  # "scalar": the factor on the value before its time features
    default: float | None = None  # "time" / "scalar": the value when the keyword is not given
    zero_init: bool = False  # the embedding starts at 0 (a network may start from one without this input)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Input kind={self.kind!r} is not one of: {', '.join(KINDS)}")
        if self.kind in ("class", "vector") and self.size < 1:
            raise ValueError(f"an Input of kind {self.kind!r} needs size >= 1")


# name -> (declaration, state-dict attribute, keyword): the names methods declared before inputs were open
BUILT_IN = {"t_end": (Input("interval"), "interval", "t_end"),
            "guidance": (Input("scalar", scale=0.25, default=1.0, zero_init=True), "guidance", "w")}
LABELS = ("classes", "cond")  # the run's labels (a class input of the run's classes): attribute, keyword


def declared(inputs: tuple[str, ...] | Mapping[str, Input]) -> dict[str, tuple[Input, str, str]]:
    """A method's ``inputs`` as name -> (declaration, attribute, keyword); a bad declaration is a ValueError."""
    if isinstance(inputs, Mapping):
        items = list(inputs.items())
    elif isinstance(inputs, (tuple, list, set, frozenset)):
        items = [(name, None) for name in inputs]
    else:
        raise ValueError(f"inputs={inputs!r}: expected a tuple of built-in names ({', '.join(BUILT_IN)}) or a "
                         f"mapping of keyword -> flowkit.models.Input")
    out = {}
    for name, spec in items:
        if not isinstance(name, str) or not name.isidentifier() or name in ("x", "t", "cond", "emb"):
            raise ValueError(f"inputs: {name!r} is not a keyword a network can take (x, t, cond and emb are taken)")
        if spec is None:
            if name not in BUILT_IN:
                raise ValueError(f"inputs: {name!r} is not a built-in input ({', '.join(BUILT_IN)}); declare it as "
                                 f"{{{name!r}: Input(kind)}} with kind one of {', '.join(KINDS)}")
            out[name] = BUILT_IN[name]
        elif isinstance(spec, Input):
            out[name] = BUILT_IN[name] if name in BUILT_IN and spec == BUILT_IN[name][0] else (spec, f"input_{name}", name)
        else:
            raise ValueError(f"inputs[{name!r}]={spec!r}: expected a flowkit.models.Input")
    return out


def embedding(spec: Input, features: int, dim: int, scale: float) -> nn.Module:
    if spec.kind in ("time", "interval", "scalar"):
        module = TimeMLP(features, dim, scale)
        if spec.zero_init:
            zeroed(module[-1])
        return module
    if spec.kind == "class":
        return nn.Embedding(spec.size + 1, dim)
    module = nn.Linear(spec.size, dim)
    return zeroed(module) if spec.zero_init else module


class Conditioned(nn.Module):
    """``net(x, t, t_end=None, cond=None, w=None, **inputs) = backbone(x, t, emb)``, emb the sum of the declared
    inputs' embeddings."""

    def __init__(self, backbone: nn.Module, inputs: tuple[str, ...] | Mapping[str, Input] = (), classes: int = 0) -> None:
        super().__init__()
        try:
            specs = declared(inputs)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for attr in ("emb_dim", "time_dim", "time_scale"):
            if not hasattr(backbone, attr):
                raise ConfigError(f"model '{type(backbone).__name__}' declares no {attr}: it cannot take the inputs "
                                  f"{', '.join([*specs, *(['labels'] if classes else [])])}")
        if classes < 0:
            raise ConfigError(f"classes={classes} is out of range; expected >= 0")
        dim, features, scale = backbone.emb_dim, backbone.time_dim, backbone.time_scale
        self.backbone = backbone
        self.inputs = frozenset(specs) | ({"labels"} if classes else frozenset())
        self.num_classes = classes
        if classes:  # built in the order every saved run was (its random initialisation follows it)
            first = {name: specs.pop(name) for name in ("t_end",) if name in specs}
            specs = {**first, "labels": (Input("class", size=classes), *LABELS), **specs}
        self.specs = {keyword: (spec, attr) for spec, attr, keyword in specs.values()}  # by keyword, in order
        for spec, attr in self.specs.values():
            self.add_module(attr, embedding(spec, features, dim, scale))

    def _embedded(self, spec: Input, module: nn.Module, value: Tensor | None, t: Tensor, keyword: str) -> Tensor:
        if spec.kind == "interval":
            return module(torch.zeros_like(t) if value is None else value - t)
        if spec.kind == "class":
            return module(torch.full_like(t, spec.size, dtype=torch.long) if value is None else value)
        if spec.kind == "vector":
            return module(torch.zeros(t.shape[0], spec.size, dtype=t.dtype, device=t.device) if value is None else value)
        if value is None:
            if spec.default is None:
                raise TypeError(f"this network needs the input '{keyword}' (declared by its method, no default)")
            value = torch.full_like(t, spec.default)
        return module(value * spec.scale if spec.kind == "scalar" else value)

    def forward(self, x: Tensor, t: Tensor, t_end: Tensor | None = None, cond: Tensor | None = None,
                w: Tensor | None = None, **inputs: Tensor) -> Tensor:
        """The built-ins keep their places (an end time third, as two-time networks are called: net(z, r, t))."""
        values = {k: v for k, v in {"t_end": t_end, "cond": cond, "w": w, **inputs}.items() if v is not None}
        unknown = sorted(set(values) - set(self.specs))
        if unknown:
            hint = ("train it with cond.labels=true" if unknown[0] == "cond" else
                    f"its method declares: {', '.join(k for k in self.specs if k != 'cond') or 'none'}")
            raise TypeError(f"this network takes no input '{unknown[0]}'; {hint}")
        parts = [self._embedded(spec, getattr(self, attr), values.get(keyword), t, keyword)
                 for keyword, (spec, attr) in self.specs.items()]
        return self.backbone(x, t, sum(parts[1:], parts[0]) if parts else None)

    def neutral(self) -> tuple[str, ...]:
        """State-dict prefixes of inputs that start without effect: a network may be started without them."""
        return tuple(f"{attr}." for spec, attr in self.specs.values() if spec.zero_init)


def compose(backbone: nn.Module, inputs: tuple[str, ...] | Mapping[str, Input] = (), classes: int = 0) -> nn.Module:
    """The backbone itself, or ``Conditioned`` when a method or the run's labels ask for more inputs."""
    return Conditioned(backbone, inputs, classes) if inputs or classes else backbone


def network_inputs(net: Any) -> frozenset[str]:
    """The names of what ``net`` takes besides (x, t): its method's inputs and "labels" (a bare backbone: none)."""
    return getattr(net, "inputs", frozenset())


def load_into(net: nn.Module, weights: dict[str, Tensor], source: str) -> None:
    """Start ``net`` from ``weights`` of another run: a backbone's weights fit a composed network's backbone,
    and inputs that start without effect (a guidance weight) may be missing; anything else must match."""
    neutral: tuple[str, ...] = ()
    if isinstance(net, Conditioned):
        neutral = net.neutral()
        if not any(k.startswith("backbone.") for k in weights):
            weights = {f"backbone.{k}": v for k, v in weights.items()}
    try:
        missing, unexpected = net.load_state_dict(weights, strict=False)
    except RuntimeError as exc:
        lines = str(exc).splitlines()
        first = lines[1].strip() if len(lines) > 1 else str(exc)
        raise ConfigError(f"model.init_from='{source}': its network does not fit this model ({first})") from None
    missing = [k for k in missing if not k.startswith(neutral)] if neutral else missing
    if missing or unexpected:
        raise ConfigError(f"model.init_from='{source}': its network does not fit this model "
                          f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
