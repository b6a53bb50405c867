"""The Python API: what the command line does, from a notebook or a script.

    import flowkit
    run = flowkit.train("rectified", trainer={"max_steps": 2000})   # or **{"trainer.max_steps": 2000}
    flow = flowkit.load(run)                                       # a run, its directory or a .ckpt
    x = flow.sample(1000, sampler="dpm++2m:10", grid="logsnr")
    logp = flow.log_prob(x)
    z = flow.invert(x, sampler="dopri5")
    rows = flowkit.compare([run], ["euler:4", "heun:2", "dopri5"])

Every option is checked as the CLI checks it (the same typed schema, the same ranges), and bad input raises
``flowkit.ConfigError`` with one message naming the value and the valid choices.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor

from flowkit.config.build import Parts, load_run
from flowkit.runtime.checkpoint import resolve_checkpoint
from flowkit.conditioning import Cond, conditioning, sampling_labels
from flowkit.errors import ConfigError, name_too_long
from flowkit.runtime.memory import check_draw_fits
from flowkit.samplers import Predictor


def _file_names(fn: Callable[..., Any]) -> Callable[..., Any]:
    """An API call whose file name the file system cannot hold raises ``ConfigError`` naming it (as the CLI
    says it), not ``OSError``."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            error = name_too_long(exc)
            if error is None:
                raise
            raise error from None
    return wrapper


def _plain(value: Any, key: str) -> Any:
    """A Python value as YAML can hold it: paths as text, numpy and one-number tensors as numbers, containers
    element by element; anything else is a ConfigError naming the key."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Tensor) and value.numel() == 1 or type(value).__module__ == "numpy" and hasattr(value, "item"):
        try:
            return _plain(value.item(), key)
        except (ValueError, RuntimeError):
            pass
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, key) for v in value]
    raise ConfigError(f"{key}={value!r}: expected a number, text, a path, true/false, a list or a mapping, not a "
                      f"{type(value).__name__}")


def _count(n: Any) -> int:
    """A sample count: a whole number >= 1, given as a Python, numpy or one-number tensor integer (not a bool)."""
    try:
        plain = _plain(n, "n")
    except ConfigError:
        plain = None
    if not (isinstance(plain, int) and not isinstance(plain, bool) and plain >= 1):
        raise ConfigError(f"n={n!r}: expected a whole number >= 1")
    return plain


def _value(value: Any, key: str = "value") -> str:
    """A Python value as an override's right-hand side (parsed back by the same YAML reader as the CLI's)."""
    value = _plain(value, key)
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return json.dumps(value)


def override_tokens(overrides: dict[str, Any], prefix: str = "") -> list[str]:
    """``{"trainer": {"max_steps": 2000}, "optim.lr": 1e-3, "path": "cosine"}`` -> CLI tokens. A nested mapping
    sets options one by one; a component given a mapping with a ``name`` is replaced as a whole."""
    tokens = []
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and "name" not in value:
            tokens += override_tokens(value, f"{dotted}.")
        else:
            tokens.append(f"{dotted}={_value(value, dotted)}")
    return tokens


@dataclass
class Run:
    """A finished training run: its directory, the numbers of its final evaluation and its checkpoint."""

    dir: Path
    summary: dict[str, Any]
    notes: list[str]

    @property
    def checkpoint(self) -> Path:
        return self.dir / "last.ckpt"

    def load(self, device: str = "cpu") -> Flow:
        return load(self, device)


@_file_names
def train(recipe: str = "rectified", *, resume: str | Path | Run | None = None, **overrides: Any) -> Run:
    """Train ``recipe`` (a packaged name or a YAML file) with ``overrides`` (``trainer={"max_steps": 2000}`` or
    ``**{"trainer.max_steps": 2000}``), or resume a run; returns the last round's ``Run``.

    >>> run = flowkit.train("rectified", trainer={"max_steps": 200}, run_root=str(tmp))  # doctest: +SKIP
    """
    from flowkit.training.loop import resolve_config, train as train_config  # Lightning is imported only to train

    tokens = [f"recipe={recipe}", *override_tokens(overrides)]
    if resume is not None:
        tokens.append(f"resume={resume.dir if isinstance(resume, Run) else resume}")
    cfg, checkpoint = resolve_config(tokens)
    result = train_config(cfg, checkpoint)
    return Run(result.run_dir, result.summary, result.notes)


class Flow:
    """A trained model with its path, method and conditioning (``flowkit.load``)."""

    def __init__(self, config: dict[str, Any], parts: Parts, device: torch.device) -> None:
        self.config, self.parts, self.device = config, parts, device

    @property
    def data_shape(self) -> tuple[int, ...]:
        """The shape the model works in (a latent run's: its codes')."""
        return tuple(self.parts.target.shape)

    @property
    def classes(self) -> int:
        """The number of classes of a class-conditional model (0: unconditional)."""
        return self.parts.classes

    def _cond(self, n: int, label: int | Tensor | None, guidance: float | None,
              generator: torch.Generator | None, classifier: Any = None) -> Cond | None:
        labels = sampling_labels(n, self.classes, classifier, label, generator or torch.default_generator)
        return conditioning(self.classes, None if labels is None else labels.to(self.device), guidance, classifier)

    @_file_names
    def sample(self, n: int, sampler: str = "dopri5", *, grid: str | None = None, label: int | Tensor | None = None,
               guidance: float | None = None, classifier: str | Path | Run | None = None,
               classifier_scale: float = 1.0, generator: torch.Generator | None = None, rtol: float = 1e-5,
               atol: float = 1e-5, decode: bool = True) -> Tensor:
        """``n`` samples (on the CPU) drawn from the source with ``generator`` (default: torch's global one), by
        ``sampler`` on ``grid`` (None: the sampler's own ``default_grid``; ``flowkit.samplers.grids``).
        ``label``: a class, a tensor of ``n`` classes, or None (random classes) for a class-conditional model, or
        with ``classifier`` (a classifier run of the same path: classifier guidance at ``classifier_scale``).
        A latent run's samples are decoded to data (``decode=False``: its codes, of shape ``data_shape``)."""
        from flowkit.interface.commands import guide_of

        n = _count(n)
        check_draw_fits(self.parts.model, n, self.data_shape, self.device)
        guide = None
        if classifier is not None:
            guide = guide_of(self.parts, str(classifier.dir if isinstance(classifier, Run) else classifier),
                             classifier_scale)
        x0 = self.parts.source.sample(n, generator or torch.default_generator).to(self.device)
        cond = self._cond(n, label, guidance, generator, guide)
        x1, _ = self.parts.sample(x0, sampler, grid=grid, cond=cond, rtol=rtol, atol=atol)
        return self.parts.target.decode(x1.cpu()) if decode else x1.cpu()

    def invert(self, x: Tensor, sampler: str = "dopri5", *, grid: str | None = None, label: int | Tensor | None = None,
               guidance: float | None = None, rtol: float = 1e-5, atol: float = 1e-5) -> Tensor:
        """Data -> source: a deterministic sampler run backwards (sampling the result returns ``x``); a latent run
        inverts the codes of ``x`` (the posterior's mean)."""
        if self.parts.target.encoded_by and isinstance(x, Tensor):
            from flowkit.interface.commands import encode_input

            x = encode_input(self.parts, x.float(), "x")
        x = self._check(x)
        if self.classes and label is None:
            raise ConfigError(f"this model is class-conditional: give the class of the points, label=0..{self.classes - 1}")
        cond = self._cond(x.shape[0], label, guidance, None)
        z, _ = self.parts.invert(x.to(self.device), sampler, grid=grid, cond=cond, rtol=rtol, atol=atol)
        return z.cpu()

    @torch.no_grad()
    def velocity(self, x: Tensor, t: float | Tensor, *, label: int | Tensor | None = None,
                 guidance: float | None = None) -> Tensor:
        """The model's velocity v(x, t) (any network read through its method and path; t a number or per sample)."""
        self._velocity_field()
        x = self._check(x).to(self.device)
        t = self._times(t, x)
        cond = None if label is None and guidance is None else self._cond(x.shape[0], label, guidance, None)
        return self._predictor().velocity(x, t, cond).cpu()

    def log_prob(self, x: Tensor, *, rtol: float = 1e-5, atol: float = 1e-5,
                 generator: torch.Generator | None = None) -> Tensor:
        """log p(x) per point by the instantaneous change of variables along dopri5 (exact divergence up to 8
        dimensions, Hutchinson above); a class-conditional model's unconditional branch."""
        from flowkit.metrics.likelihood import log_likelihood

        self._velocity_field()
        x = self._check(x).to(self.device)
        logp, _ = log_likelihood(self._predictor().velocity_field(None), x, rtol=rtol, atol=atol, generator=generator)
        return logp.cpu()

    def _times(self, t: Any, x: Tensor) -> Tensor:
        """``t`` as one time per point: a number, or a tensor of one or ``len(x)`` times, each in [0, 1]."""
        try:
            t = torch.as_tensor(t, dtype=x.dtype, device=self.device)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"t={t!r}: expected a number in [0, 1] or a tensor of them") from None
        if t.numel() not in (1, x.shape[0]):
            raise ConfigError(f"t: {t.numel()} times for {x.shape[0]} points; give one time or one per point")
        if not bool(((t >= 0) & (t <= 1)).all()):
            shown = f"{float(t.flatten()[0])}" if t.numel() == 1 else "a tensor with values"
            raise ConfigError(f"t={shown}: expected a number in [0, 1] (t=0 the source, t=1 the data)")
        return t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(x.shape[0])

    def _predictor(self) -> Predictor:
        return Predictor.of(self.parts.method, self.parts.model, self.parts.path)

    def _velocity_field(self) -> None:
        if not self.parts.method.ode:
            raise ConfigError(f"method '{self.parts.method_name}' does not learn a velocity field: no velocity or "
                              f"likelihood; sample it with {', '.join(self.parts.method.samplers)}")

    def _check(self, x: Any) -> Tensor:
        if not isinstance(x, Tensor) or tuple(x.shape[1:]) != self.data_shape or x.shape[0] == 0:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ConfigError(f"x: expected a tensor of shape (n, {', '.join(map(str, self.data_shape))}); got {shape}")
        if not torch.isfinite(x).all():
            raise ConfigError("x holds NaN or inf")
        return x.float()

    def __repr__(self) -> str:
        return (f"Flow({self.config['name']}: method {self.parts.method_name}, path {self.config['path']['name']}, "
                f"data {self.data_shape}, classes {self.classes}, on {self.device})")


def _device(device: str | torch.device) -> torch.device:
    from flowkit.interface.commands import parse_device

    return parse_device(str(device))


@_file_names
def load(run: str | Path | Run, device: str | torch.device = "cpu") -> Flow:
    """The trained model of a run (its directory, its ``.ckpt`` or a ``Run``), EMA weights, in eval mode."""
    if not isinstance(run, (str, Path, Run)):
        raise ConfigError(f"run={run!r}: expected a run directory, a .ckpt file or a Run")
    where = run.dir if isinstance(run, Run) else run
    target = _device(device)
    config, parts = load_run(resolve_checkpoint(where))
    parts.model.to(target)
    return Flow(config, parts, target)


@_file_names
def compare(runs: Iterable[str | Path | Run], samplers: Iterable[str], *, n: int = 2000, repeats: int = 5,
            grid: str | None = None, seed: int = 1234, label: int = -1, guidance: float | None = None,
            rtol: float = 1e-5, atol: float = 1e-5, reference_tol: float = 1e-7,
            device: str = "cpu") -> list[dict[str, Any]]:
    """The rows ``flowkit compare`` prints: every run with every sampler it supports, on the same noise (model, name,
    solver, grid (``grid``, or the sampler's default; None for adaptive ones), nfe, metric, value and std over
    ``repeats`` draws of ``n``, error to a tight dopri5 solution, seconds); with the defaults the training
    summary's numbers. Unsupported pairs are skipped; where the first run's data is gone, metric is "none" and
    value None (the rest needs no data)."""
    from flowkit.interface.commands import CompareArgs, compare_runs, parse_args

    ckpts = [str(r.dir if isinstance(r, Run) else r) for r in runs]
    specs = [str(s) for s in samplers]
    if not ckpts or not specs:
        raise ConfigError("compare needs at least one run and one sampler")
    options = {"ckpt": ",".join(ckpts), "solvers": ",".join(specs), "n": n, "repeats": repeats, "grid": grid,
               "seed": seed, "label": label, "guidance": guidance, "rtol": rtol, "atol": atol, "reference_tol": reference_tol,
               "device": str(device)}
    args, target = parse_args(CompareArgs, override_tokens(options))  # the CLI's checks, the CLI's messages
    return compare_runs(ckpts, specs, args, target)["rows"]


@dataclass(frozen=True)
class Entry:
    """One registered unit (or recipe), as ``flowkit list`` shows it."""

    kind: str     # "path", "coupling", ..., "recipe"
    name: str     # what a recipe or an override names it by
    source: str   # module.qualname of the object, or the recipe's file
    summary: str  # the first paragraph of its docstring (a recipe's leading comment), on one line
    group: str    # the entry-point group third-party packages register it through


def catalogue() -> list[Entry]:
    """Everything registered, kind by kind (paths, couplings, time samplers, methods, samplers, grids, models,
    datasets, then recipes), entry-point plugins included:

        >>> sorted({e.kind for e in flowkit.catalogue()})[:3]
        ['coupling', 'dataset', 'grid']
    """
    from flowkit.config.schema import RECIPE_GROUP, recipe_files, recipe_summary
    from flowkit.interface.registries import all_registries
    from flowkit.registry import summary

    entries = [Entry(registry.kind, name, f"{obj.__module__}.{obj.__qualname__}", summary(obj), registry.group)
               for registry in all_registries() for name, obj in registry.items()]
    return entries + [Entry("recipe", name, str(file), recipe_summary(name, file), RECIPE_GROUP)
                      for name, file in sorted(recipe_files().items())]
