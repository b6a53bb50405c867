"""The one LightningModule (model + method + coupling + AdamW) and the Lightning Trainer around it.

EMA of the weights is a Lightning ``WeightAveraging`` (``EMA`` below): the checkpoint's ``state_dict`` holds the
EMA weights (what sampling uses) and ``current_model_state`` the raw ones. Checkpoints are written
to a temporary file and renamed, so a kill during a save leaves the previous ``last.ckpt`` whole.
Non-finite losses and gradients are watched without a host sync per step (``flowkit.finite``). A
method with a critic (adversarial distillation) is optimised manually, two players, two AdamW.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar, WeightAveraging
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.optim.swa_utils import get_ema_multi_avg_fn

from flowkit.checkpoint import write_atomically
from flowkit.conditioning import drop_labels
from flowkit.data import step_seed
from flowkit.finite import FiniteWatch, total_norm

CHECKPOINT_FORMAT = 1


class FlowModule(L.LightningModule):
    def __init__(self, model: nn.Module, method: Any, coupling: Any, config: dict[str, Any],
                 data_shape: tuple[int, ...], classes: int = 0) -> None:
        super().__init__()
        self.classes = classes  # > 0: class-conditional; label ``classes`` is the null class
        self.model = model
        self.method = method
        self.coupling = coupling
        self.config = config
        self.data_shape = tuple(data_shape)
        self.last_saved_step: int | None = None
        self.skipped = 0  # batches dropped for a non-finite loss or gradient (trainer.on_nonfinite=skip)
        self.watch = FiniteWatch()  # trainer.on_nonfinite=stop: recorded on the device, read every check_every
        critic = getattr(method, "critic", None)
        if critic is not None:  # a two-player method: the critic is trained here too, and checkpointed
            self.critic = critic
            self.automatic_optimization = False
        self.loss_of = compiled(method.loss, config["trainer"]["compile"])

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t)

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
        if y is not None:
            y = drop_labels(y, self.config["cond"]["drop"], self.classes)
        return {**batch, "x0": x0, "x1": x1, "y": y, "step": self.global_step}

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        batch = self.coupled(batch)
        if not self.automatic_optimization:
            return self.two_player_step(batch)
        return self.reduced(self.loss_of(self.model, batch))

    def reduced(self, terms: dict[str, torch.Tensor], prefix: str = "train/") -> torch.Tensor | None:
        """The mean loss, with every term logged. With on_nonfinite=skip, None (no step) when the loss is
        not finite; with stop, a non-finite loss is recorded without a host sync (``FiniteWatch``)."""
        loss = terms["loss"].mean()
        critic = prefix == "critic/"
        if self.config["trainer"]["on_nonfinite"] == "skip":
            if not torch.isfinite(loss):
                self._skip()
                return None  # Lightning skips backward and the optimizer step
        else:
            self.watch.note(loss, self.global_step, 2 if critic else 0)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:  # the steps Lightning writes: logging a
            for name, value in terms.items():  # value costs ~0.7 ms a step (a metric object moved to the device)
                self.log(f"{prefix}{name}", value.mean(), prog_bar=name == "loss")
        return loss

    def two_player_step(self, batch: dict[str, Any]) -> None:
        """Manual optimisation of a method with a critic: one critic step on the current model, then one
        model step against the updated critic. ``global_step`` counts model steps only (the critic's
        optimizer steps through the strategy, uncounted), so max_steps, checkpoints and seeds keep
        their meaning. A method whose ``critic_loss`` is None this step (e.g. adversarial weight 0)
        trains the model alone."""
        (opt_model, opt_critic), (sched_model, sched_critic) = self.optimizers(), self.lr_schedulers()
        for optimizer, scheduler, terms_of, prefix in ((opt_critic, sched_critic, self.method.critic_loss, "critic/"),
                                                       (opt_model, sched_model, self.loss_of, "train/")):
            optimizer.zero_grad(set_to_none=True)
            self.toggle_optimizer(optimizer)  # the other network's parameters stop asking for gradients
            terms = terms_of(self.model, batch)
            if terms is not None:
                def closure(terms=terms, optimizer=optimizer, prefix=prefix) -> torch.Tensor | None:
                    loss = self.reduced(terms, prefix)
                    if loss is not None:
                        self.manual_backward(loss)
                        clip = self.config["trainer"]["gradient_clip_val"]
                        if clip is not None:
                            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")
                    return loss

                if optimizer is opt_model:
                    optimizer.step(closure=closure)
                else:
                    self.trainer.strategy.optimizer_step(optimizer.optimizer, closure, model=self)
                scheduler.step()
            self.untoggle_optimizer(optimizer)
        return None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = total_norm(params)
        if self.config["trainer"]["on_nonfinite"] != "skip":
            critic = not self.automatic_optimization and params[0] is next(self.critic.parameters())
            self.watch.note(norm, self.global_step, 3 if critic else 1)
        elif not torch.isfinite(norm):
            self._skip()
            optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without a gradient untouched

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
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
        """AdamW with warmup and a constant or cosine schedule; a critic gets its own AdamW (the method's
        ``critic_optim``: lr, betas, weight_decay) on its own scheduler of the same shape."""
        o = self.config["optim"]
        total, warmup, schedule = self.config["trainer"]["max_steps"], o["warmup_steps"], o["schedule"]

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
            return 1.0

        def scheduled(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

        model = scheduled(adamw(self.model, lr=o["lr"], betas=(o["beta1"], o["beta2"]), weight_decay=o["weight_decay"]))
        if self.automatic_optimization:
            return model
        return [model, scheduled(adamw(self.critic, **self.method.critic_optim))]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.watch.check()  # raising here writes nothing: the last checkpoint stays the last good one
        checkpoint["flowkit"] = {"format": CHECKPOINT_FORMAT, "config": self.config, "data_shape": list(self.data_shape)}
        if hasattr(self.method, "state_dict"):  # a method with training state of its own (a target network)
            checkpoint["flowkit"]["method_state"] = self.method.state_dict()
        self.last_saved_step = self.global_step

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("flowkit", {}).get("method_state")
        if state is not None:
            self.method.load_state_dict(state)


class EMA(WeightAveraging):
    """EMA of the weights after every optimizer step, as Lightning's ``EMAWeightAveraging`` (same checkpoint
    layout), but with one multi-tensor lerp per device and dtype instead of one update per tensor."""

    def __init__(self, decay: float) -> None:
        super().__init__(multi_avg_fn=get_ema_multi_avg_fn(decay))


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


def make_trainer(cfg: dict[str, Any], run_dir: Path, manual: bool = False) -> L.Trainer:
    """``manual``: the module optimises manually (a two-player method) and clips gradients itself."""
    t = cfg["trainer"]
    if manual:  # Lightning's advice to save weights before the step: our checkpoints are after it, by design
        warnings.filterwarnings("ignore", message=".*manual optimization and every_n_train_steps.*")
    callbacks: list[L.Callback] = [
        EMA(cfg["optim"]["ema_decay"]),
        ModelCheckpoint(dirpath=run_dir, filename="step-{step}", save_top_k=0, save_last=True,
                        every_n_train_steps=t["checkpoint_every"]),
    ]
    if t["enable_progress_bar"]:
        callbacks.append(RichProgressBar())
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
        enable_progress_bar=t["enable_progress_bar"],
        enable_model_summary=False,
        logger=CSVLogger(save_dir=run_dir, name="logs", version=""),  # pinned: resume appends
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
