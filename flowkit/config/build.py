"""Recipe -> objects: the one place a config dict becomes data, model, path, coupling and method, and
where a saved run is rebuilt from its checkpoint."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import Tensor, nn

from flowkit.runtime.checkpoint import CHECKPOINT_FORMAT, ema_weights, read_checkpoint, read_matching, weights_fault
from flowkit.conditioning import Cond
from flowkit.couplings import COUPLINGS
from flowkit.data import DATASETS, Dataset
from flowkit.data.pair import build_pair, dataset_label, dataset_spec
from flowkit.errors import ConfigError
from flowkit.runtime.memory import MODEL_SIZE, check_fits, meta_parameters
from flowkit.methods import METHODS, Method, check_capabilities
from flowkit.models import MODELS, compose
from flowkit.models.network import load_into
from flowkit.models.parameterisation import AsVelocity
from flowkit.paths import PATHS, AffinePath
from flowkit.samplers import build_sampler, invert_with, sample_with
from flowkit.samplers.base import deterministic
from flowkit.timesteps import TIME_SAMPLERS


@dataclass
class Parts:
    source: Dataset
    target: Dataset
    model: nn.Module
    path: AffinePath
    coupling: Any
    method: Method
    classes: int = 0  # > 0: a class-conditional model (cond.labels=true) over this many classes
    method_name: str = ""
    coupling_name: str = "independent"
    source_name: str = "gaussian"

    def sample(self, x0: Tensor, spec: str, *, grid: str | None = None, cond: Cond | None = None, rtol: float = 1e-5,
               atol: float = 1e-5, progress: Callable[[int], None] | None = None) -> tuple[Tensor, int]:
        """(samples, NFE) of the model from the source batch ``x0`` with sampler ``spec`` (``sample_with``)."""
        self.check_stochastic(spec)
        return sample_with(self.method, self.model, self.path, x0, spec, grid=grid, cond=cond, rtol=rtol, atol=atol,
                           method_name=self.method_name, progress=progress)

    def planned_nfe(self, spec: str) -> int | None:
        """The network evaluations a draw with ``spec`` takes, where the sampler says it in advance (None:
        adaptive)."""
        sampler, steps = build_sampler(self.method, self.path, spec, method_name=self.method_name)
        return sampler.nfe(steps)

    def invert(self, x1: Tensor, spec: str, *, grid: str | None = None, cond: Cond | None = None, rtol: float = 1e-5,
               atol: float = 1e-5) -> tuple[Tensor, int]:
        """(source points, NFE): ``x1`` mapped back to t=0 by the deterministic sampler ``spec`` (``invert_with``)."""
        return invert_with(self.method, self.model, self.path, x1, spec, grid=grid, cond=cond, rtol=rtol, atol=atol,
                           method_name=self.method_name)

    def is_stochastic(self, spec: str) -> bool:
        """Whether the sampler ``spec`` (with this method's options) draws noise."""
        return build_sampler(self.method, self.path, spec, method_name=self.method_name)[0].stochastic

    @property
    def has_score(self) -> bool:
        """Whether the model's prediction gives the score of p_t (Tweedie's formula): only for a standard-normal
        source (as the source declares) paired independently (as the coupling declares). Stochastic samplers
        and classifier guidance need it."""
        return bool(self.source.standard_normal) and COUPLINGS.get(self.coupling_name).independent

    def stochastic_fault(self, spec: str) -> str | None:
        """Why the stochastic sampler ``spec`` cannot sample this model, or None (also for deterministic ones):
        it needs the score of p_t, which the path gives from a prediction only for an independent standard-normal
        source (Tweedie's formula)."""
        if not self.is_stochastic(spec) or self.has_score:
            return None
        return (f"sampler '{spec}' is stochastic: it needs the score of p_t, which the model gives only for an "
                f"independent standard-normal source; this run has data.source='{self.source_name}' and coupling "
                f"'{self.coupling_name}'. Use a deterministic sampler ({deterministic(self.path)})")

    def check_stochastic(self, spec: str) -> None:
        """``stochastic_fault`` as a ConfigError."""
        fault = self.stochastic_fault(spec)
        if fault:
            raise ConfigError(fault)


# True while a trained run is rebuilt to be sampled: what only training needs (a teacher's checkpoint) is not read
SAMPLING: ContextVar[bool] = ContextVar("flowkit_sampling", default=False)


def build_parts(cfg: dict[str, Any], with_coupling: bool = True, saved: dict[str, Any] | None = None) -> Parts:
    """Build every unit a recipe names; raises ``ConfigError`` on any bad name or option.

    The network is the registered backbone composed with what the method declares it needs (``inputs``)
    and the run's labels (``flowkit.models.network``). ``model.init_from`` (a checkpoint or run dir)
    starts it from that run's EMA weights, e.g. a student from its teacher. ``saved``: the ``flowkit`` section
    of the run's own checkpoint, whose weights will be loaded: the data is then read only when a question
    needs it (``Deferred``) and ``init_from`` is not read again.
    """
    d = cfg["data"]
    source, target = (saved_pair(d, saved) if saved is not None and "num_classes" in saved else
                      build_pair(d["source"], d["target"], d["path"], d.get("resolution"), d.get("flip", False),
                                 d.get("features"), encoder=d.get("encoder")))
    path = PATHS.build(cfg["path"])
    time_sampler = TIME_SAMPLERS.build(cfg["time"])
    classes = conditioning_classes(cfg, target)
    name = cfg["method"]["name"]
    method = METHODS.build(cfg["method"], path=path, time_sampler=time_sampler, data_shape=target.shape,
                           total_steps=cfg["trainer"]["max_steps"], classes=classes, source_name=dataset_label(d["source"]))
    check_capabilities(name, method)
    if method.needs_labels and not classes:
        raise ConfigError(f"method '{name}' with these options needs class labels: cond.labels=true")
    model_spec = dict(cfg["model"])
    prediction = model_spec.pop("prediction", "velocity")  # what the network outputs; see AsVelocity
    init_from = model_spec.pop("init_from", None)
    def network() -> nn.Module:  # a classifier's labels are its outputs, not its inputs
        label_input = 0 if method.classifier else classes
        return compose(MODELS.build(model_spec, data_shape=target.shape, classes=classes), method.inputs,
                       label_input)

    parameters = meta_parameters(network)  # counted before allocating: model.width=1e9 is one line, not a crash
    if parameters is not None:
        check_fits(MODEL_SIZE, 4 * parameters, "cpu", f"{parameters:,} parameters")
    model = network()
    if init_from and saved is None:
        if not Path(str(init_from)).exists():  # the recipes start a student from its teacher (${method.teacher})
            raise ConfigError(f"model.init_from='{init_from}': no checkpoint or run directory there; a model starts "
                              "only from a flowkit run (for a teacher given as package.module:name or FILE.pt2, "
                              "write model.init_from=null)")
        load_into(model, ema_weights(read_matching(init_from, target.shape)[1]), init_from)
    if prediction != "velocity":
        try:
            model = AsVelocity(model, path, prediction)
        except ValueError as exc:
            raise ConfigError(f"model.{exc}") from None
    coupling = COUPLINGS.build(cfg["coupling"], data_shape=target.shape) if with_coupling else None
    return Parts(source=source, target=target, model=model, path=path, coupling=coupling, method=method,
                 classes=classes, method_name=name, coupling_name=cfg["coupling"]["name"],
                 source_name=dataset_label(d["source"]))


def saved_pair(d: dict[str, Any], saved: dict[str, Any]) -> tuple[Dataset, Dataset]:
    """A trained run's (source, target) from what its checkpoint holds: the target ``Deferred`` (its data read
    when a question needs it), its codes decoded by its encoder (built now: it needs no data)."""
    from flowkit.data.deferred import Deferred
    from flowkit.data.encoders import build_encoder
    from flowkit.data.latent import Coder

    spec = d.get("encoder")
    built = build_encoder(spec) if spec else None

    def build() -> Dataset:
        return build_pair(d["source"], d["target"], d["path"], d.get("resolution"), d.get("flip", False),
                          d.get("features"), prepare=False, encoder=spec, built=built)[1]

    what = f"data.path={d['path']}" if d["path"] is not None else f"data.target={dataset_label(d['target'])}"
    target = Deferred(build, tuple(saved["data_shape"]), int(saved["num_classes"]), spec,
                      Coder(built) if built is not None else None, label=f"the run's data ({what})")
    return DATASETS.build(dataset_spec(d["source"], "data.source"), data_shape=target.shape), target


def conditioning_classes(cfg: dict[str, Any], target: Dataset) -> int:
    """How many classes the model is conditioned on: the target's, with ``cond.labels=true``; else 0."""
    if not cfg.get("cond", {}).get("labels", False):
        return 0
    if not target.num_classes:
        raise ConfigError(f"cond.labels=true, but data.target '{dataset_label(cfg['data']['target'])}' has no labels; "
                          "`flowkit list` shows which datasets have classes")
    return target.num_classes


def load_run(path: str | Path) -> tuple[dict[str, Any], Parts]:
    """(config, Parts with the EMA weights loaded into ``parts.model``, in eval mode) from a checkpoint or
    run dir. The coupling is not rebuilt: sampling a model never needs the pairs it was trained on."""
    ckpt = read_checkpoint(path)
    cfg = ckpt["flowkit"]["config"]
    token = SAMPLING.set(True)  # a student samples without its teacher: teachers are not read (flowkit.teacher)
    try:
        parts = build_parts(cfg, with_coupling=False, saved=ckpt["flowkit"])
    finally:
        SAMPLING.reset(token)
    weights = ema_weights(ckpt)
    wrong = weights_fault(weights, parts.model.state_dict())
    if wrong:
        raise ConfigError(f"checkpoint '{path}': its weights do not fit the network its config builds ({wrong}; "
                          f"format {ckpt['flowkit'].get('format', 1)}, this flowkit writes format {CHECKPOINT_FORMAT})")
    parts.model.load_state_dict(weights)
    parts.model.eval()
    return cfg, parts

