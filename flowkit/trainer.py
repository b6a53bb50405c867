"""The one LightningModule (model + method + coupling + AdamW) and the Lightning Trainer around it.

EMA of the weights is a Lightning ``WeightAveraging`` (``EMA`` below): the checkpoint's ``state_dict`` holds the
EMA weights (what sampling uses) and ``current_model_state`` the raw ones. Checkpoints are written
to a temporary file and renamed, so a kill during a save leaves the previous ``last.ckpt`` whole.
Non-finite losses and gradients are watched without a host sync per step (``flowkit.finite``). The
module knows methods only through their contract (``flowkit.methods.Method``): its loss, its further
networks and their optimisation (``Steps``), its after-step hook and its state.
"""

from __future__ import annotations

import importlib.util

import csv
import math
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, WeightAveraging
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from torch import nn

from flowkit.checkpoint import CHECKPOINT_FORMAT, weights_fault, write_atomically
from flowkit.conditioning import drop_labels
from flowkit.data.pair import step_seed
from flowkit.errors import ConfigError, ContractError
from flowkit.finite import FiniteWatch, total_norm
from flowkit.methods import Method
from flowkit.progress import ProgressLines



STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # stop after the current step and save (``flowkit.training``)


class FlowModule(L.LightningModule):
    """Model, method, coupling and optimisers. A method that trains further networks (``Method.networks``)
    optimises each step itself (``Method.training_step`` with ``Steps``); any other is one loss, one AdamW."""

    def __init__(self, model: nn.Module, method: Method, coupling: Any, config: dict[str, Any],
                 data_shape: tuple[int, ...], classes: int = 0, data_classes: int = 0) -> None:
        super().__init__()
        self.classes = classes  # > 0: class-conditional; label ``classes`` is the null class
        self.data_classes = data_classes  # the target's classes, conditioned on or not (sampling reads them)
        self.model = model
        self.method = method
        self.coupling = coupling
        self.config = config
        self.data_shape = tuple(data_shape)
        self.last_saved_step: int | None = None
        self.skipped = 0  # batches dropped for a non-finite loss or gradient (trainer.on_nonfinite=skip)
        networks = method.networks()
        self.networks = nn.ModuleDict({name: net for name, (net, _) in networks.items()})  # moved and checkpointed
        # AdamW's options; "ema": True (popped) asks for the network to be averaged too: by default only the model is
        self.network_optim = {name: {k: v for k, v in options.items() if k != "ema"} for name, (_, options) in networks.items()}
        self.averaged = {name for name, (_, options) in networks.items() if options.get("ema", False)}
        self.names = ["model", *networks]  # optimiser i trains network names[i]
        self.automatic_optimization = not networks
        self.watch = FiniteWatch(finite_kinds(self.names))  # on_nonfinite=stop: recorded on the device, read every check_every
        self.loss_of = compiled(method.loss, config["trainer"]["compile"])
        self._optimizer_names: dict[int, int] = {}
        self._checked: set[int] = set()  # networks whose loss terms met the contract on their first step
        self.batch_size = 0
        self.stop_signal: int | None = None  # a signal asked the run to stop (``flowkit.training``'s handler)
        self.signal_handler: Callable[[int, Any], None] | None = None  # that handler, while fit runs in the main thread

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t)

    def on_fit_start(self) -> None:
        self.method.setup(self.model)

    def on_train_start(self) -> None:
        # Lightning's own SIGTERM handler (set up inside fit) exits mid-loop without a checkpoint (and with
        # status 0); while training, flowkit's handler (``flowkit.training.stop_on_signals``) is the one in force.
        if self.signal_handler is not None:
            for sig in STOP_SIGNALS:
                signal.signal(sig, self.signal_handler)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Time draws and coupling draws are a function of (seed, step): a resumed run redraws them. Only the
        # generators in use are seeded: torch.manual_seed also queues CUDA/XPU/MTIA seeds with a stack trace
        # each (about 1 ms per step on a CPU-only machine).
        seed = step_seed(self.config["seed"] + 1, self.global_step, self.global_rank)
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.default_generators[self.device.index or 0].manual_seed(seed)

    def coupled(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The method's batch: the coupled pair, the labels after dropout (the coupling sees the true ones)
        and the training step. ``coupling`` None: the loader has paired the batch already."""
        y = batch.get("y")
        x0, x1 = batch["x0"], batch["x1"]
        if self.coupling is not None:
            x0, x1 = self.coupling(x0, x1) if y is None else self.coupling(x0, x1, y=y)
        if y is not None and not self.method.classifier:  # a classifier learns the labels: none dropped
            y = drop_labels(y, self.config["cond"]["drop"], self.classes)
        return {**batch, "x0": x0, "x1": x1, "y": y, "step": self.global_step}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        batch = self.coupled(batch)
        self.batch_size = batch["x1"].shape[0]
        if not self.automatic_optimization:
            self.method.training_step(Steps(self), batch)
            return None
        return self.reduced(self.loss_of(self.model, batch))

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.method.after_step(self.model, self.global_step)  # global_step now counts this step

    def reduced(self, terms: dict[str, torch.Tensor], index: int = 0) -> torch.Tensor | None:
        """The mean loss, with every term logged under the network's name. With on_nonfinite=skip, None
        (no step) when the loss is not finite; with stop, a non-finite loss is recorded without a host
        sync (``FiniteWatch``)."""
        if index not in self._checked:  # the loss contract, on each network's first step
            self.check_terms(terms, index)
            self._checked.add(index)
        loss = terms["loss"].mean()
        if self.config["trainer"]["on_nonfinite"] == "skip":
            if not torch.isfinite(loss):
                self._skip()
                return None  # Lightning skips backward and the optimizer step
        else:
            self.watch.note(loss, self.global_step, 2 * index)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:  # the steps Lightning writes: logging a
            prefix = "train/" if index == 0 else f"{self.names[index]}/"  # value costs ~0.7 ms a step
            for name, value in terms.items():
                self.log(f"{prefix}{name}", value.mean(), prog_bar=name == "loss" and index == 0)
        return loss

    def check_terms(self, terms: Any, index: int) -> None:
        """A ContractError unless ``terms`` is a mapping with "loss" and every term a per-sample (batch,) tensor."""
        owner = f"method '{self.config['method']['name']}'" + (f" (network '{self.names[index]}')" if index else "")
        expected = f"a dict {{'loss': tensor of shape ({self.batch_size},), ...}}: one value per sample, the trainer reduces"
        if not isinstance(terms, dict) or "loss" not in terms:
            got = f"a dict without 'loss' (keys {sorted(terms)})" if isinstance(terms, dict) else f"a {type(terms).__name__}"
            raise ContractError(f"{owner}: its loss returned {got}; expected {expected}")
        for name, value in terms.items():
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != (self.batch_size,):
                got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"
                raise ContractError(f"{owner}: its loss term '{name}' has {got}; expected {expected}")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = total_norm(params)
        if self.config["trainer"]["on_nonfinite"] != "skip":
            self.watch.note(norm, self.global_step, 2 * self._optimizer_names.get(id(optimizer), 0) + 1)
        elif not torch.isfinite(norm):
            self._skip()
            optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without a gradient untouched

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.stop_signal is not None:  # set by a SIGINT / SIGTERM handler: stop after this step
            self.trainer.should_stop = True
        every = self.config["trainer"]["check_finite_every"] or (1 if self.device.type == "cpu" else
                                                                 self.config["trainer"]["log_every_n_steps"])
        if self.global_step % every == 0:
            self.watch.check()

    def on_train_end(self) -> None:
        self.watch.check()

    def _skip(self) -> None:
        """trainer.on_nonfinite=skip: the batch is dropped; count it."""
        self.skipped += 1
        self.log("train/skipped", float(self.skipped), reduce_fx="max")

    def configure_optimizers(self) -> dict[str, Any] | list[dict[str, Any]]:
        """AdamW with warmup and a constant or cosine schedule; each further network of the method gets its own
        AdamW (its options: lr, betas, weight_decay) on its own scheduler of the same shape."""
        o = self.config["optim"]
        total, warmup, schedule = self.config["trainer"]["max_steps"], o["warmup_steps"], o["schedule"]

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
            return 1.0

        def scheduled(optimizer: torch.optim.Optimizer, index: int) -> dict[str, Any]:
            self._optimizer_names[id(optimizer)] = index
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

        model = scheduled(adamw(self.model, lr=o["lr"], betas=(o["beta1"], o["beta2"]), weight_decay=o["weight_decay"]), 0)
        if self.automatic_optimization:
            return model
        return [model, *(scheduled(adamw(self.networks[name], **self.network_optim[name]), i)
                         for i, name in enumerate(self.names[1:], start=1))]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.watch.check()  # raising here writes nothing: the last checkpoint stays the last good one
        checkpoint["flowkit"] = {"format": CHECKPOINT_FORMAT, "config": self.config, "data_shape": list(self.data_shape),
                                 "num_classes": self.data_classes, "method_state": self.method.state_dict()}
        self.last_saved_step = self.global_step

    def resume_fault(self, checkpoint: dict[str, Any]) -> str | None:
        """Why ``checkpoint`` cannot resume this module (None: it can): its weights (EMA and raw) must fit the
        networks, and it must hold one optimiser and one schedule state per network, as this module saves them."""
        expected = self.state_dict()
        for section in ("state_dict", "current_model_state"):
            wrong = weights_fault(checkpoint.get(section, {}), expected)
            if wrong:
                return f"its {section} does not fit the networks this config builds ({wrong})"
        for key in ("optimizer_states", "lr_schedulers"):
            states = checkpoint.get(key)
            if not isinstance(states, list) or len(states) != len(self.names) or not all(isinstance(x, dict) for x in states):
                found = f"{len(states)} entries" if isinstance(states, list) else "nothing" if states is None else \
                    f"a {type(states).__name__}"
                return (f"its {key} holds {found}, expected {len(self.names)} (one per network: {', '.join(self.names)}); "
                        f"a weights-only file can start a run (model.init_from=...) but not resume one")
        return None

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("flowkit", {}).get("method_state")
        if state:
            self.method.load_state_dict(state)


class Steps:
    """What a method's own ``training_step`` drives: ``step(name, compute)`` runs one optimiser step of the
    network ``name`` ("model", or one of ``Method.networks``) on the loss terms ``compute()`` returns
    (None: no step). Only that network's parameters take gradients meanwhile; the step is reduced, logged,
    watched for non-finite values and clipped as any other, and stepped with its own schedule. Only the
    model's steps count as training steps (max_steps, checkpoints and seeds keep their meaning), and after
    each the method's ``after_step`` runs."""

    def __init__(self, module: FlowModule) -> None:
        self.module = module
        self.model = module.model
        self.networks = dict(module.networks.items())
        self.loss = module.loss_of  # the method's loss, compiled when trainer.compile asks

    def step(self, name: str, compute: Callable[[], dict[str, torch.Tensor] | None]) -> torch.Tensor | None:
        m = self.module
        if name not in m.names:
            raise ValueError(f"no network '{name}' to step; valid: {', '.join(m.names)}")
        index = m.names.index(name)
        optimizers, schedulers = m.optimizers(), m.lr_schedulers()
        optimizer, scheduler = optimizers[index], schedulers[index]
        optimizer.zero_grad(set_to_none=True)
        m.toggle_optimizer(optimizer)  # the other networks' parameters stop asking for gradients
        loss = None
        try:
            terms = compute()
            if terms is not None:
                def closure() -> torch.Tensor | None:
                    nonlocal loss
                    loss = m.reduced(terms, index)
                    if loss is not None:
                        m.manual_backward(loss)
                        clip = m.config["trainer"]["gradient_clip_val"]
                        if clip is not None:
                            m.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
                    return loss

                if index == 0:
                    optimizer.step(closure=closure)
                    m.method.after_step(m.model, m.global_step)
                else:  # through the strategy: not counted as a training step
                    m.trainer.strategy.optimizer_step(optimizer.optimizer, closure, model=m)
                scheduler.step()
        finally:
            m.untoggle_optimizer(optimizer)
        return loss


def finite_kinds(names: list[str]) -> list[str]:
    """FiniteWatch messages: per network, its loss (kind 2i) and its gradient (kind 2i + 1)."""
    kinds = []
    for name in names:
        owner = "" if name == "model" else f"{name} "
        kinds += [f"the {owner}loss is {{value}}", f"a {owner}gradient is not finite"]
    return kinds


class EMA(WeightAveraging):
    """EMA of the weights after every optimizer step, as Lightning's ``EMAWeightAveraging`` (same checkpoint
    layout), but with one multi-tensor lerp per device and dtype instead of one update per tensor. The EMA is
    copied into the model by ``to_model`` after fit, not in ``on_train_end``: the final checkpoint (written
    in ``on_train_end``, after every other callback's) must hold the raw weights as ``current_model_state``."""

    def __init__(self, decay: float, warmup: bool = True) -> None:
        super().__init__(multi_avg_fn=self._update)
        self.decay, self.warmup, self._step = decay, warmup, 0

    def decay_at(self, step: int) -> float:
        """The decay after ``step`` optimizer steps: ``min(d, (1 + step) / (10 + step))`` with the warm-up (0.25 at
        step 2, 0.9 at step 80, d = 0.999 from step 8991 on), so a short run samples from its recent weights and
        not from its initial ones; ``d`` throughout without it."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    def short_run_note(self, steps: int) -> str | None:
        """What a run of ``steps`` shorter than the EMA horizon 1 / (1 - d) should know (None: nothing)."""
        horizon = round(1 / (1 - self.decay)) if self.decay < 1 else math.inf
        if steps >= horizon:
            return None
        said = f"trainer.max_steps={steps} is shorter than the EMA horizon of optim.ema_decay={self.decay} ({horizon:.0f} steps)"
        if self.warmup:
            end = self.decay_at(steps)
            return f"{said}: the EMA warmed up (decay {end:.3f} at the end: it averages about the last {1 / (1 - end):.0f} steps)"
        return (f"{said} and optim.ema_warmup=false: {self.decay ** (steps - 1):.0%} of the EMA is still the initial "
                f"weights, so samples come from a mostly untrained network; set optim.ema_warmup=true or lower optim.ema_decay")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # a method's further networks are not averaged unless they ask ("ema": True): their copy follows them
        self.followed = {p.data_ptr() for name, net in getattr(pl_module, "networks", {}).items()
                         if name not in pl_module.averaged for p in [*net.parameters(), *net.buffers()]}

    @torch.no_grad()
    def _update(self, averaged: list[torch.Tensor], current: list[torch.Tensor], _: Any) -> None:
        if not averaged[0].is_floating_point():  # integer buffers (counters): the current value
            torch._foreach_copy_(averaged, current)
            return
        if getattr(self, "followed", None):
            follow = [i for i, c in enumerate(current) if c.data_ptr() in self.followed]
            if follow:
                torch._foreach_copy_([averaged[i] for i in follow], [current[i] for i in follow])
                keep = sorted(set(range(len(current))) - set(follow))
                averaged, current = [averaged[i] for i in keep], [current[i] for i in keep]
                if not current:
                    return
        torch._foreach_lerp_(averaged, current, 1.0 - self.decay_at(self._step))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self._step = trainer.global_step  # read on the host: no device sync for the decay
        super().on_train_batch_end(trainer, pl_module, *args)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def to_model(self, pl_module: L.LightningModule) -> None:
        """Sampling weights: the EMA copied into the model (what Lightning's ``on_train_end`` does)."""
        if self._average_model is not None:
            self._copy_average_to_current(pl_module)


class Checkpoints(ModelCheckpoint):
    """``last.ckpt`` every ``every`` steps and at the end of fit, whatever the step (a run of 1500 steps with
    checkpoints every 1000 ends with ``last.ckpt`` at 1500, and so does a run stopped by a signal). The file is
    always ``last.ckpt``, never ``last-v1.ckpt``: a run directory copied, moved or reached through a link
    resumes in place."""

    def __init__(self, run_dir: Path, every: int) -> None:
        super().__init__(dirpath=run_dir, filename="step-{step}", save_top_k=0, save_last=True,
                         every_n_train_steps=every, enable_version_counter=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > 0 and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class ResumedCSVLogger(CSVLogger):
    """The CSV log pinned to ``RUN/logs/metrics.csv``; a resumed run appends to it. Lightning's writer deletes
    the file it finds; this one keeps its rows of the steps before ``resumed_at`` (the later ones belong to
    steps the resumed run trains again)."""

    def __init__(self, run_dir: Path, resumed_at: int | None) -> None:
        super().__init__(save_dir=run_dir, name="logs", version="")
        self.resumed_at = resumed_at

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(self.log_dir, self.resumed_at)
        return self._experiment


class _KeepingWriter(ExperimentWriter):
    def __init__(self, log_dir: str, resumed_at: int | None) -> None:
        self.resumed_at = resumed_at
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # called by __init__: where Lightning deletes the file
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows, keys = list(reader), list(reader.fieldnames or [])

        def kept(row: dict[str, str]) -> bool:
            try:
                return self.resumed_at is not None and int(float(row.get("step") or 0)) < self.resumed_at
            except ValueError:
                return False

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(row for row in rows if kept(row))

        write_atomically(path, write)
        self.metrics_keys = sorted(keys)


def compiled(loss: Any, mode: str) -> Any:
    """``trainer.compile``: the method's loss (time draws, path, network forward, and through AOTAutograd its
    backward) under ``torch.compile``; "none" leaves it eager. The network itself is not wrapped, so its
    state_dict, the EMA copy and checkpoints are the same either way. "reduce-overhead" adds CUDA graphs."""
    if mode == "none":
        return loss
    return torch.compile(loss, mode=None if mode == "default" else mode)


def adamw(net: nn.Module, **options: Any) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one launch for all parameters, CPU and CUDA) where the parameters
    allow it, else the multi-tensor one."""
    params = list(net.parameters())
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
    return torch.optim.AdamW(params, **options, **({"fused": True} if fused else {"foreach": True}))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints through ``write_atomically``: readers only ever see a whole checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        write_atomically(path, lambda tmp: super(AtomicCheckpointIO, self).save_checkpoint(checkpoint, tmp, storage_options))


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


# trainer.logger -> (the package it needs, the extra that installs it)
LOGGER_PACKAGES = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"), "wandb": (("wandb",), "wandb")}


def check_logger(name: str) -> None:
    """A ConfigError, before anything is written, when ``trainer.logger`` needs a package this machine lacks."""
    if name not in LOGGER_PACKAGES:
        return
    modules, extra = LOGGER_PACKAGES[name]
    if not any(importlib.util.find_spec(module) for module in modules):
        raise ConfigError(f"trainer.logger={name} needs the {modules[0]} package, which is not installed: "
                          f"pip install 'flowkit[{extra}]' (or trainer.logger=csv)")


def extra_loggers(name: str, run_dir: Path) -> list[Any]:
    """The logger ``trainer.logger`` names beside the CSV log: TensorBoard event files in ``RUN/logs/tensorboard``,
    or a Weights & Biases run named after the run directory (files in ``RUN/wandb``; offline with WANDB_MODE=offline)."""
    if name == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return [TensorBoardLogger(save_dir=run_dir, name="logs", version="tensorboard", default_hp_metric=False)]
    if name == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        return [WandbLogger(name=run_dir.name, save_dir=run_dir, project="flowkit")]
    return []


def make_trainer(cfg: dict[str, Any], run_dir: Path, manual: bool = False, resumed_at: int | None = None) -> L.Trainer:
    """``manual``: the method optimises its steps itself (``Steps``), which clip gradients themselves.
    ``resumed_at``: the step a resumed run continues from (its log keeps the rows before it)."""
    t = cfg["trainer"]
    if manual:  # Lightning's advice to save weights before the step: our checkpoints are after it, by design
        warnings.filterwarnings("ignore", message=".*manual optimization and every_n_train_steps.*")
    callbacks: list[L.Callback] = [EMA(cfg["optim"]["ema_decay"], cfg["optim"]["ema_warmup"]), Checkpoints(run_dir, t["checkpoint_every"])]
    terminal = sys.stderr.isatty()
    if t["enable_progress_bar"]:
        callbacks.append(RichProgressBar() if terminal else ProgressLines())  # a log file gets plain lines
    return L.Trainer(
        default_root_dir=run_dir,
        max_steps=t["max_steps"],
        max_epochs=-1,
        accelerator=t["accelerator"],
        devices=_devices(t["devices"]),
        strategy=t["strategy"],
        precision=t["precision"],
        num_nodes=t["num_nodes"],
        log_every_n_steps=t["log_every_n_steps"],
        gradient_clip_val=None if manual else t["gradient_clip_val"],
        enable_progress_bar=t["enable_progress_bar"] and terminal,
        enable_model_summary=False,
        logger=[ResumedCSVLogger(run_dir, resumed_at), *extra_loggers(t["logger"], run_dir)],
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
