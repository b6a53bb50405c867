"""Teachers, a contract: a distiller declares it wants one and flowkit loads it, frozen, read on the student's path.

A method asks for a teacher by taking an ``__init__`` parameter annotated ``Teacher``; flowkit builds it from the
option's text (``method.teacher=SPEC``, ``Registry.build``), checked before any run directory exists:

    RUN                              a flowkit run directory or .ckpt: read through its own method (what its network
                                     predicts, ``Method.predictor``) and its own path; its data shape and source must
                                     be the student's
    package.module:name[:OPTIONS]    an importable callable ``f(x, t) -> prediction``, a module object, or (with
                                     ``weights=FILE``) an ``nn.Module`` class or factory called with no argument whose
                                     state dict is read from FILE with ``torch.load(weights_only=True)``
    FILE.pt2[:OPTIONS]               a ``torch.export`` archive (``torch.export.save``) of a module of (x, t)

with OPTIONS ``predicts=velocity|x1|x0|score`` (default velocity) and ``path=NAME`` (a registered path; default the
student's). A teacher that is not a flowkit run is called once on (2, *data shape) at build time to check its output.

What the distiller gets, ``Teacher.on(device)``, is a frozen module whose ``forward(x, t, **cond)`` is the velocity
and ``predict(kind, x, t, **cond)`` any prediction, both on the *student's* path at the student's time. Two affine
paths with the same endpoints differ by a time change and a scale: at the student's t, the teacher's time t' has the
same signal-to-noise ratio, alpha'(t') / sigma'(t') = alpha(t) / sigma(t), and x' = r x_t with
r = (alpha'(t') + sigma'(t')) / (alpha(t) + sigma(t)) is exactly the teacher's x_t' of the same pair (x0, x1) (for
any source). The teacher's prediction at (x', t') fixes (x0_hat, x1_hat), which the student's path turns into the
asked prediction. Times are clamped to [1e-4, 1 - 1e-4] where a conversion divides (as ``AsVelocity`` does).

A trained run rebuilt to be sampled (``flowkit.config.build.SAMPLING``) reads no teacher: a student samples without it.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from flowkit.config.build import SAMPLING, Parts, load_run
from flowkit.runtime.checkpoint import read_matching
from flowkit.errors import ConfigError
from flowkit.paths import PATHS, AffinePath
from flowkit.paths.base import PREDICTIONS, expand_like

OPTIONS = ("predicts", "path", "weights")
EPS = 1e-4


def check_shape(path: str | Path, data_shape: tuple[int, ...]) -> Path:
    """The checkpoint file, checked against ``data_shape``; its weights are loaded later, when needed."""
    return read_matching(path, data_shape)[0]


def load_teacher(path: str | Path) -> tuple[nn.Module, Parts, dict[str, Any]]:
    """(frozen EMA network, the run's parts, its config). The network is a plain attribute of whoever holds it,
    never a registered submodule: Lightning's EMA would otherwise copy and average it."""
    cfg, parts = load_run(path)
    return copy.deepcopy(parts.model).eval().requires_grad_(False), parts, cfg


def follow_teacher(config: dict[str, Any], old_teacher: str, new_teacher: str | Path) -> dict[str, Any]:
    """The model update for a distillation's next round: a student that was started from its teacher
    (``model.init_from`` equal to the teacher) starts from the new teacher; any other choice stays."""
    if config["model"].get("init_from") == old_teacher:
        return {"model": {"init_from": str(new_teacher)}}
    return {}


def same_path(a: AffinePath, b: AffinePath) -> bool:
    """Whether two paths have the same alpha and sigma (on 33 times, float64)."""
    ts = torch.linspace(0, 1, 33, dtype=torch.float64)
    return bool(torch.allclose(a.alpha(ts), b.alpha(ts)) and torch.allclose(a.sigma(ts), b.sigma(ts)))


class OnPath(nn.Module):
    """A frozen prediction ``fn(x, t, **cond)`` of kind ``predicts`` on path ``own``, read on ``path`` (module
    docstring): ``forward`` is the velocity, ``predict(kind, ...)`` any prediction."""

    def __init__(self, fn: Callable[..., Tensor], predicts: str, own: AffinePath, path: AffinePath,
                 num_classes: int = 0, inputs: frozenset[str] = frozenset(), net: nn.Module | None = None) -> None:
        super().__init__()
        self.fn, self.predicts, self.own, self.path = fn, predicts, own, path
        self.net = net  # the network behind ``fn`` (a method's predictor may wrap it): moved with this module
        self.same = same_path(own, path)
        self.num_classes, self.inputs = num_classes, inputs  # as the teacher's network has them (flowkit.config.guidance)

    def forward(self, x: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        return self.predict("velocity", x, t, **cond)

    def predict(self, kind: str, x: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        if self.same:
            out = self.fn(x, t, **cond)
            return out if kind == self.predicts else self.path.convert(out, x, t.clamp(EPS, 1 - EPS), self.predicts,
                                                                        kind)
        t = t.clamp(EPS, 1 - EPS)
        t_own = self.own.time_at_log_snr(self.path.log_snr(t.double())).to(t.dtype).clamp(EPS, 1 - EPS)
        ratio = (self.own.alpha(t_own) + self.own.sigma(t_own)) / (self.path.alpha(t) + self.path.sigma(t))
        x_own = expand_like(ratio, x) * x
        x0, x1 = self.own.endpoints(self.fn(x_own, t_own, **cond), x_own, t_own, self.predicts)
        return self.path.from_endpoints(x0, x1, t, kind)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """(source, options) of ``SOURCE[:key=value]...``: the trailing parts with '=' are options."""
    parts = spec.split(":")
    options: dict[str, str] = {}
    while len(parts) > 1 and "=" in parts[-1]:
        key, _, value = parts.pop().partition("=")
        if key not in OPTIONS:
            raise ConfigError(f"teacher '{spec}': unknown option '{key}'; valid: {', '.join(OPTIONS)}")
        options[key] = value
    return ":".join(parts), options


def import_object(source: str, spec: str) -> Any:
    """``package.module:name`` (a dotted name after the colon reaches attributes of attributes)."""
    module_name, _, name = source.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"teacher '{spec}': cannot import '{module_name}' ({exc}); expected a run directory, a .ckpt, "
                          "a .pt2 archive or package.module:name") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"teacher '{spec}': module '{module_name}' has no '{name}'")
        obj = getattr(obj, part)
    return obj


def load_module_teacher(source: str, options: dict[str, str], spec: str) -> Callable[..., Tensor]:
    """A teacher flowkit did not train: a callable, a module, a class or factory with weights, or an export."""
    if source.endswith(".pt2"):
        if not Path(source).is_file():
            raise ConfigError(f"teacher '{spec}': no such file '{source}'")
        try:
            return torch.export.load(source).module()
        except Exception as exc:  # noqa: BLE001 - any unreadable archive, said in one line
            raise ConfigError(f"teacher '{spec}': not a torch.export archive ({type(exc).__name__}: {exc})") from None
    obj = import_object(source, spec)
    if "weights" in options:
        net = obj() if callable(obj) and not isinstance(obj, nn.Module) else obj
        if not isinstance(net, nn.Module):
            raise ConfigError(f"teacher '{spec}': weights= needs an nn.Module class or factory; '{source}' gave a "
                              f"{type(net).__name__}")
        try:
            state = torch.load(options["weights"], map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except FileNotFoundError:
            raise ConfigError(f"teacher '{spec}': no such file '{options['weights']}'") from None
        except Exception as exc:  # noqa: BLE001 - an unsafe pickle, a state dict that does not fit: one line
            raise ConfigError(f"teacher '{spec}': weights '{options['weights']}' do not load "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        return net
    if not callable(obj):
        raise ConfigError(f"teacher '{spec}': '{source}' is a {type(obj).__name__}, not a callable of (x, t)")
    return obj


class Teacher:
    """A method's teacher (module docstring). Built by flowkit from the option's text before any run directory
    exists; its network is loaded, frozen, on first use (``on``) and shared by copies of the method."""

    def __init__(self, owner: str, spec: str, data_shape: tuple[int, ...], path: AffinePath,
                 source_name: str | None = None) -> None:
        if not spec:
            raise ConfigError(f"{owner} needs a teacher: method.teacher=<run dir or .ckpt of a trained flow, "
                              "package.module:name or FILE.pt2>")
        self.owner, self.spec, self.data_shape, self.path = owner, spec, tuple(data_shape), path
        self._net: OnPath | None = None
        self.file: Path | None = None
        self._source_name = source_name
        source, options = parse_spec(spec)
        if not options and not source.endswith(".pt2") and (Path(source).exists() or ":" not in source):
            try:
                self.file = Path(source) if SAMPLING.get() else check_shape(source, self.data_shape)
            except ConfigError as exc:
                raise ConfigError(f"{owner}: teacher: {exc}") from None
            return
        if SAMPLING.get():
            return  # sampled, the student never calls it
        predicts = options.get("predicts", "velocity")
        if predicts not in PREDICTIONS:
            raise ConfigError(f"teacher '{spec}': predicts={predicts!r}; valid: {', '.join(PREDICTIONS)}")
        own = PATHS.build({"name": options["path"]}) if "path" in options else path
        fn = load_module_teacher(source, options, spec)
        if isinstance(fn, nn.Module):
            fn.requires_grad_(False)
            if not source.endswith(".pt2"):  # an export is traced in one mode and refuses eval()
                fn.eval()
        self._net = OnPath(fn, predicts, own, path)
        self._check_output(fn)

    def _check_output(self, fn: Callable[..., Tensor]) -> None:
        x = torch.zeros(2, *self.data_shape)
        with torch.no_grad():
            try:
                out = fn(x, torch.full((2,), 0.5))
            except Exception as exc:  # noqa: BLE001 - the outside callable's failure, said as its contract's
                raise ConfigError(f"teacher '{self.spec}' fails on a batch of shape {tuple(x.shape)} at t = 0.5: "
                                  f"{type(exc).__name__}: {exc}") from None
        if not isinstance(out, Tensor) or out.shape != x.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ConfigError(f"teacher '{self.spec}' gave {got} for a batch of shape {tuple(x.shape)}; expected its "
                              "prediction of the same shape")

    def _load_run(self) -> OnPath:
        assert self.file is not None
        net, parts, cfg = load_teacher(check_shape(self.file, self.data_shape))
        if not parts.method.ode:
            raise ConfigError(f"{self.owner}: teacher '{self.file}' was trained with method '{parts.method_name}', "
                              "which defines no velocity (ode = False); distil from a flow")
        if self._source_name is not None and parts.source_name != self._source_name:
            raise ConfigError(f"{self.owner}: teacher '{self.file}' flows from data.source={parts.source_name}, the "
                              f"student from {self._source_name}; they must share the source")
        fn, predicts = parts.method.predictor(net)
        return OnPath(fn, predicts, parts.path, self.path, getattr(net, "num_classes", 0),
                      getattr(net, "inputs", frozenset()), net=net)

    def on(self, device: Any) -> OnPath:
        """The frozen teacher on ``device``, read on the student's path (loaded on first use)."""
        if self._net is None:
            if self.file is None:
                raise ConfigError(f"{self.owner}: the teacher is not read while sampling a trained student")
            self._net = self._load_run()
        return self._net.to(device)

    def __deepcopy__(self, memo: dict) -> Teacher:
        """Copies (Lightning's EMA copies the module that holds the method) share the frozen network."""
        clone = copy.copy(self)
        memo[id(self)] = clone
        return clone

    @classmethod
    def from_option(cls, value: str, owner: str, injected: dict[str, Any]) -> Teacher:
        """Built by ``Registry.build`` for a parameter annotated ``Teacher``, from the option's text."""
        if "data_shape" not in injected or "path" not in injected:
            raise ConfigError(f"{owner}: a teacher needs the run's data shape and path")
        return cls(owner, value, injected["data_shape"], injected["path"], injected.get("source_name"))
