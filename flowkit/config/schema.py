"""Recipes: a typed schema, YAML recipes on top of it, and ``key=value`` overrides.

OmegaConf checks keys and types against the dataclasses below; this module adds what it lacks:
a token without ``=`` is refused (OmegaConf would read it as ``key: None``), unknown keys get
"did you mean", and ranges are checked. ``path``, ``coupling``, ``time``, ``method`` and ``model``
are components: ``{name: ..., <options>}``; ``path=cosine`` replaces the whole component, and
``path.sigma_min=0.01`` sets one option, checked against the registered unit's signature when
it is built.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from flowkit.errors import ConfigError, choices_hint
from flowkit.runtime.rundir import NAME_RULE, is_plain_name

COMPONENTS = ("model", "path", "coupling", "time", "method")
DATASET_KEYS = ("data.source", "data.target")  # datasets, set by name or as a mapping of options
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
LOGGERS = ("csv", "tensorboard", "wandb")


@dataclass
class DataConfig:
    # NAME, NAME:ARG (ARG the dataset's first option) or a mapping {name: NAME, option: value} (data.target.arms=5)
    source: Any = "gaussian"  # a registered dataset (``flowkit list``)
    target: Any = "8gaussians"  # a registered dataset, or folder:PATH / images:FILE (user images); ignored when ``path`` is set
    path: Optional[str] = None  # a .npy / .pt array of target samples, shape (n, *data_shape)
    batch_size: int = 256
    workers: int = 0  # DataLoader processes drawing batches and solving a data-only coupling (OT) off the step
    resolution: Optional[int] = None  # image datasets: shorter side resized to this, centre-cropped square
    flip: bool = False  # image datasets: random horizontal flips
    features: Optional[str] = None  # image datasets: FD in this feature network (inception[:WEIGHTS]: FID; digits)
    encoder: Optional[str] = None  # NAME[:ARG]: train in this encoder's latent space (space-to-depth, autoencoder-kl:DIR)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 0
    schedule: str = "constant"  # constant | cosine (to 0 at trainer.max_steps)
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + step) / (10 + step)): short runs sample from recent weights


@dataclass
class TrainerConfig:
    """Passed to ``lightning.Trainer``; ``checkpoint_every`` goes to ModelCheckpoint and ``on_nonfinite``
    to flowkit's own check."""

    max_steps: int = 10_000
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    precision: str = "32-true"
    num_nodes: int = 1
    log_every_n_steps: int = 100
    checkpoint_every: int = 1000
    gradient_clip_val: Optional[float] = None
    enable_progress_bar: bool = True
    on_nonfinite: str = "stop"  # stop | skip: what a NaN/inf loss or gradient does
    check_finite_every: int = 0  # stop: read the non-finite flag every N steps (0: 1 on CPU, log_every_n_steps else)
    compile: str = "none"  # none | default | reduce-overhead (CUDA graphs) | max-autotune: torch.compile the loss
    logger: str = "csv"  # csv | tensorboard | wandb: logs/metrics.csv always, and this logger beside it


@dataclass
class EvalConfig:
    """The summary after training: the data's metric with ``solver`` and a table of ``compare`` samplers. Keys left
    null are chosen for the data (``Dataset.evaluation``: images and codes get a fixed-step sampler on samples sized
    to the run's training) or else take the general defaults (dopri5, 5 draws of 2,000, four fixed-step samplers
    compared): ``flowkit.training.evaluate.resolve_eval``; the summary says what was chosen."""

    n: Optional[int] = None  # general default 2000
    repeats: Optional[int] = None  # W2 and its floor are means over this many independent draws (general: 5)
    solver: Optional[str] = None  # general default dopri5
    rtol: float = 1e-5
    atol: float = 1e-5
    compare: Optional[List[str]] = None  # general default euler:1, euler:4, midpoint:4, rk4:4
    seed: int = 1234


@dataclass
class CondConfig:
    labels: bool = False  # class-conditional: the target's labels go to the model (and to OT couplings)
    drop: float = 0.1  # label dropout: this share of labels becomes the null class (the unconditional model)


@dataclass
class Config:
    name: str = "custom"
    seed: int = 0
    run_root: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    cond: CondConfig = field(default_factory=CondConfig)
    model: Dict[str, Any] = field(default_factory=lambda: {"name": "mlp"})
    path: Dict[str, Any] = field(default_factory=lambda: {"name": "rectified"})
    coupling: Dict[str, Any] = field(default_factory=lambda: {"name": "independent"})
    time: Dict[str, Any] = field(default_factory=lambda: {"name": "logit_normal"})
    method: Dict[str, Any] = field(default_factory=lambda: {"name": "cfm"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def recipe_dir() -> Path:
    """Recipes ship inside the wheel as ``flowkit.recipes``; a plain checkout has them at the top level."""
    try:
        return Path(str(resources.files("flowkit.recipes")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "recipes"


RECIPE_GROUP = "flowkit.recipes"


def recipe_files() -> dict[str, Path]:
    """Every recipe by name: flowkit's own, then those of installed packages (entry-point group
    ``flowkit.recipes``, ``anything = "package"``: every ``*.yaml`` in that package is a recipe). A name that is
    taken already, or a package that cannot be found, is one warning and is skipped."""
    import warnings
    from importlib.metadata import entry_points

    files = {p.stem: p for p in sorted(recipe_dir().glob("*.yaml"))}
    for ep in entry_points(group=RECIPE_GROUP):
        try:
            folder = Path(str(resources.files(ep.value)))
        except (ImportError, TypeError, ValueError) as exc:
            warnings.warn(f"flowkit: skipped {RECIPE_GROUP} entry point '{ep.name}' ({ep.value}): {exc}",
                          RuntimeWarning, stacklevel=2)
            continue
        for file in sorted(folder.glob("*.yaml")):
            if file.stem in files:
                warnings.warn(f"flowkit: skipped recipe '{file.stem}' of {ep.value}: the name is {files[file.stem]}'s",
                              RuntimeWarning, stacklevel=2)
                continue
            files[file.stem] = file
    return files


def recipe_names() -> list[str]:
    return sorted(recipe_files())


def recipe_summary(name: str, file: Path | None = None) -> str:
    """A recipe's leading comment block on one line: what ``flowkit list`` shows."""
    lines = []
    for line in (file or recipe_files()[name]).read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(" ".join(lines).split())


def load_recipe(recipe: str) -> DictConfig:
    """The schema with a recipe merged on: a name (``rectified``; flowkit's or an installed package's) or a path to
    a YAML file."""
    file = Path(recipe)
    if not (file.suffix in (".yaml", ".yml") and file.is_file()):
        known = recipe_files()
        if recipe not in known:
            raise ConfigError(f"unknown recipe '{recipe}'; {choices_hint(recipe, known)} (or a .yaml file's path)")
        file = known[recipe]
    cfg = OmegaConf.structured(Config(name=file.stem))
    try:
        loaded = OmegaConf.load(file)
    except Exception as exc:
        raise ConfigError(f"recipe {file}: not valid YAML ({exc})") from None
    return _merge(cfg, loaded, f"recipe {file}")


def saved_config(saved: dict[str, Any]) -> DictConfig:
    """A run's own config (from its checkpoint) on the schema: no recipe underneath, so a component
    keeps exactly the options it was trained with."""
    return _merge(OmegaConf.structured(Config(name=saved.get("name", "run"))), saved, "the checkpoint's config")


def parse_overrides(tokens: list[str]) -> list[tuple[str, Any]]:
    pairs = []
    for token in tokens:
        key, eq, raw = token.partition("=")
        if not eq:
            raise ConfigError(f"{token!r} is not an override; write key=value (e.g. trainer.max_steps=2000)")
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", key):
            raise ConfigError(f"{token!r}: {key!r} is not a dotted key (e.g. optim.lr=3e-4)")
        if not raw.strip():  # YAML reads it as null: `data.path=` would silently mean "no path"
            raise ConfigError(f"{token!r} has no value; give one, or write {key}=null to unset it")
        if "${" in raw:
            raise ConfigError(f"{token!r}: interpolations (${{...}}) are not supported in overrides")
        try:
            value = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={raw}"]))["v"]
        except Exception:
            raise ConfigError(f"{token!r}: cannot parse the value {raw!r}") from None
        pairs.append((key, value))
    return pairs


def apply_overrides(cfg: DictConfig, tokens: list[str]) -> DictConfig:
    for key, value in parse_overrides(tokens):
        where = f"{key}={value!r}"
        if key in COMPONENTS and not (isinstance(value, dict) and "name" not in value):
            if isinstance(value, dict) and not isinstance(value["name"], str) or not isinstance(value, (dict, str)):
                raise ConfigError(f"{where}: expected a registered {key} name")
            cfg = cfg.copy()
            # a new component starts from its own defaults: a name alone, or a mapping with a name, replaces it whole
            cfg[key] = value if isinstance(value, dict) else {"name": value}
            continue
        if key in DATASET_KEYS:  # a new dataset starts from its own defaults, as a component does
            if not isinstance(value, (str, dict)):
                raise ConfigError(f"{where}: expected a registered dataset name, NAME:ARG or a mapping with a name")
            cfg = cfg.copy()
            OmegaConf.update(cfg, key, value, merge=False)
            continue
        owner = key.rpartition(".")[0]
        if owner in DATASET_KEYS and isinstance(OmegaConf.select(cfg, owner), str):  # data.target.arms=5
            cfg = cfg.copy()
            OmegaConf.update(cfg, owner, {"name": OmegaConf.select(cfg, owner)}, merge=False)
        if schema_type(key) is bool and not isinstance(value, bool):  # OmegaConf would read 2 or "yes" as true
            raise ConfigError(f"{where}: {key} must be true or false")
        for part in reversed(key.split(".")):
            value = {part: value}
        cfg = _merge(cfg, value, where)
    return cfg


def schema_type(key: str) -> Any:
    """The annotation of a dotted key in the schema (``Config`` and its sections), or None where it has none
    (a component's options, an unknown key)."""
    owner: Any = Config
    for part in key.split("."):
        hints = typing.get_type_hints(owner) if isinstance(owner, type) and hasattr(owner, "__dataclass_fields__") else {}
        if part not in hints:
            return None
        owner = hints[part]
    return owner


def schema_rows(owner: Any = None, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, allowed range) of every key of the schema, for ``flowkit train --help``."""
    from dataclasses import MISSING, fields, is_dataclass

    owner = owner or Config
    hints = typing.get_type_hints(owner)
    rows = []
    for f in fields(owner):
        key, hint = f"{prefix}{f.name}", hints[f.name]
        default = f.default_factory() if f.default is MISSING else f.default
        if is_dataclass(hint):
            rows += schema_rows(hint, f"{key}.")
            continue
        if key in COMPONENTS:
            rows.append((key, "component", f"{default['name']}", "a registered name (flowkit list), or key.option=value"))
            continue
        if key in DATASET_KEYS:
            rows.append((key, "dataset", str(default), "a registered dataset, NAME:ARG, or key.option=value"))
            continue
        kind = " or ".join("None" if a is type(None) else a.__name__ for a in typing.get_args(hint)) \
            if typing.get_origin(hint) in (typing.Union,) else getattr(hint, "__name__", str(hint)).replace("List", "list")
        shown = "null" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        rows.append((key, kind, shown.replace("'", ""), _RANGES.get(key, ("", ""))[1]))
    return rows


def _merge(cfg: DictConfig, update: Any, where: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, update)
    except ConfigKeyError as exc:
        key = exc.full_key or str(exc.key)
        parent = key.rpartition(".")[0]
        node = OmegaConf.select(cfg, parent) if parent else cfg
        valid = [f"{parent}.{k}" if parent else str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
        raise ConfigError(f"{where}: unknown key '{key}'; {choices_hint(key, valid)}") from None
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{where}: {_type_message(exc)}") from None
    except (TypeError, ValueError) as exc:  # OmegaConf raises these bare, e.g. a mapping merged into a list
        raise ConfigError(f"{where}: does not fit the schema ({' '.join(str(exc).split())})") from None


def _type_message(exc: OmegaConfBaseException) -> str:
    """'trainer.max_steps must be int' from the schema's annotation of the offending field."""
    owner, key = getattr(exc, "object_type", None), getattr(exc, "key", None)
    try:
        hint = typing.get_type_hints(owner)[key]
    except Exception:
        return str(exc).splitlines()[0]
    name = getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
    return f"{exc.full_key} must be {name}"


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true")  # networks and data are float32
_RANGES = {
    "name": (is_plain_name, NAME_RULE),  # a run directory's name: never a path out of run_root
    "data.batch_size": (lambda v: v >= 1, ">= 1"),
    "data.workers": (lambda v: v >= 0, ">= 0"),
    "optim.lr": (lambda v: 0 < v < math.inf, "> 0 and finite"),
    "optim.weight_decay": (lambda v: 0 <= v < math.inf, ">= 0 and finite"),
    "optim.beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optim.beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optim.warmup_steps": (lambda v: v >= 0, ">= 0"),
    "optim.schedule": (lambda v: v in ("constant", "cosine"), "one of: constant, cosine"),
    "optim.ema_decay": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2^32)"),
    "trainer.max_steps": (lambda v: v >= 1, ">= 1"),
    "trainer.accelerator": (lambda v: v in ACCELERATORS, f"one of: {', '.join(ACCELERATORS)}"),
    "trainer.devices": (lambda v: v == "auto" or re.fullmatch(r"-1|[1-9]\d*|\d+(,\d+)+|\d+,", v) is not None,
                        "auto, a number of devices >= 1, -1 (all), or device indices such as 0,1 (one index: 0,)"),
    "trainer.precision": (lambda v: v in PRECISIONS, f"one of: {', '.join(PRECISIONS)}"),
    "trainer.num_nodes": (lambda v: v >= 1, ">= 1"),
    "trainer.log_every_n_steps": (lambda v: v >= 1, ">= 1"),
    "trainer.checkpoint_every": (lambda v: v >= 1, ">= 1"),
    "trainer.gradient_clip_val": (lambda v: v is None or 0 < v < math.inf, "> 0 and finite (or null)"),
    "trainer.on_nonfinite": (lambda v: v in ("stop", "skip"), "one of: stop, skip"),
    "trainer.check_finite_every": (lambda v: v >= 0, ">= 0 (0: every step on CPU, log_every_n_steps on a GPU)"),
    "trainer.compile": (lambda v: v in COMPILE_MODES, f"one of: {', '.join(COMPILE_MODES)}"),
    "trainer.logger": (lambda v: v in LOGGERS, f"one of: {', '.join(LOGGERS)}"),
    "cond.drop": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "data.resolution": (lambda v: v is None or 1 <= v <= 4096, "null or in [1, 4096]"),
    "eval.n": (lambda v: v is None or v >= 2, ">= 2 (or null: chosen for the data)"),
    "eval.repeats": (lambda v: v is None or v >= 1, ">= 1 (or null: chosen for the data)"),
    "eval.rtol": (lambda v: v > 0, "> 0"),
    "eval.atol": (lambda v: v > 0, "> 0"),
}


_ABSENT = object()


def check_ranges(cfg: DictConfig, ranges: dict[str, tuple[Callable[[Any], bool], str]]) -> None:
    """``ranges``: key -> (test, what is expected); a value failing its test is a ConfigError naming the key, the
    value and the range. Keys the config does not have are skipped."""
    for key, (ok, expected) in ranges.items():
        value = OmegaConf.select(cfg, key, default=_ABSENT)
        if value is not _ABSENT and not ok(value):
            raise ConfigError(f"{key}={value!r} is out of range; expected {expected}")


def validate(cfg: DictConfig) -> None:
    """Range checks the types cannot express; each failure names the key, the value and the range."""
    try:
        OmegaConf.resolve(cfg)  # a recipe's ${...} that points nowhere fails here, not mid-run
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot resolve the config: {' '.join(str(exc).split())}") from None
    check_ranges(cfg, _RANGES)
    for component in COMPONENTS:
        if not isinstance(cfg[component].get("name"), str):
            raise ConfigError(f"{component}: needs a 'name' (see `flowkit list`)")


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    """Plain Python containers: what checkpoints store and what components are built from."""
    return OmegaConf.to_container(cfg, resolve=True)
