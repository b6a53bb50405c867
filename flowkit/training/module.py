"""The one LightningModule: model + method + coupling + AdamW, one training step, the checkpoint's flowkit section.

Non-finite losses and gradients are watched without a host sync per step (``flowkit.runtime.finite``). The module
knows methods only through their contract (``flowkit.methods.Method``): its loss, its further networks and their
optimisation (``flowkit.training.steps``), its after-step hook and its state.
"""

from __future__ import annotations

import math
import signal
from typing import Any, Callable

import lightning as L
import torch
from torch import nn

from flowkit.conditioning import drop_labels
from flowkit.data.pair import step_seed
from flowkit.errors import ContractError
from flowkit.methods import Method, method_networks
from flowkit.runtime.checkpoint import CHECKPOINT_FORMAT, file_digest, weights_fault
from flowkit.runtime.finite import FiniteWatch, total_norm
from flowkit.training.steps import OptimiserSteps

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # stop after the current step and save (``flowkit.training.loop``)


class FlowModule(L.LightningModule):
    """Model, method, coupling and optimisers. A method that trains further networks (``Method.networks``)
    optimises each step itself (``Method.training_step`` with ``OptimiserSteps``); any other is one loss, one AdamW."""

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
        self.data_digest = file_digest(config["data"].get("path"))  # data.path's bytes: a resume must read the same
        self.skipped = 0  # batches dropped for a non-finite loss or gradient (trainer.on_nonfinite=skip)
        networks = method_networks(method, model)
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
        self.stop_signal: int | None = None  # a signal asked the run to stop (``flowkit.training.loop``'s handler)
        self.signal_handler: Callable[[int, Any], None] | None = None  # that handler, while fit runs in the main thread

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t)

    def on_fit_start(self) -> None:
        self.method.setup(self.model)

    def on_train_start(self) -> None:
        # Lightning's own SIGTERM handler (set up inside fit) exits mid-loop without a checkpoint (and with
        # status 0); while training, flowkit's handler (``flowkit.training.loop.stop_on_signals``) is the one in force.
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
            self.method.training_step(OptimiserSteps(self), batch)
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
                                 "num_classes": self.data_classes, "method_state": self.method.state_dict(),
                                 "data_digest": self.data_digest}

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


def finite_kinds(names: list[str]) -> list[str]:
    """FiniteWatch messages: per network, its loss (kind 2i) and its gradient (kind 2i + 1)."""
    kinds = []
    for name in names:
        owner = "" if name == "model" else f"{name} "
        kinds += [f"the {owner}loss is {{value}}", f"a {owner}gradient is not finite"]
    return kinds


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
