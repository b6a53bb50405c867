"""The one LightningModule (model + method + coupling + AdamW) and the Lightning Trainer around it.

EMA of the weights is Lightning's ``EMAWeightAveraging``: the checkpoint's ``state_dict`` holds the
EMA weights (what sampling uses) and ``current_model_state`` the raw ones. Checkpoints are written
to a temporary file and renamed, so a kill during a save leaves the previous ``last.ckpt`` whole.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch import nn

from flowkit.checkpoint import write_atomically
from flowkit.conditioning import drop_labels
from flowkit.data import step_seed
from flowkit.errors import TrainingError

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

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.model(x, t)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Time draws and coupling draws are a function of (seed, step): a resumed run redraws them.
        torch.manual_seed(step_seed(self.config["seed"] + 1, self.global_step, self.global_rank))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        y = batch.get("y")
        if y is None:
            x0, x1 = self.coupling(batch["x0"], batch["x1"])
        else:  # the coupling sees the true labels; the model sees them after dropout
            x0, x1 = self.coupling(batch["x0"], batch["x1"], y=y)
            y = drop_labels(y, self.config["cond"]["drop"], self.classes)
        terms = self.method.loss(self.model, {**batch, "x0": x0, "x1": x1, "y": y, "step": self.global_step})
        loss = terms["loss"].mean()
        if not torch.isfinite(loss):
            self._nonfinite(f"the loss is {loss.item()}")
            return None  # Lightning skips backward and the optimizer step
        for name, value in terms.items():
            self.log(f"train/{name}", value.mean(), prog_bar=name == "loss")
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.norm() for g in grads]).sum()):
            self._nonfinite("a gradient is not finite")
            optimizer.zero_grad(set_to_none=True)  # AdamW leaves parameters without a gradient untouched

    def _nonfinite(self, what: str) -> None:
        """Stop (the default) or, with trainer.on_nonfinite=skip, drop the batch and count it."""
        if self.config["trainer"]["on_nonfinite"] != "skip":
            raise TrainingError(f"{what} at step {self.global_step}")
        self.skipped += 1
        self.log("train/skipped", float(self.skipped), reduce_fx="max")

    def configure_optimizers(self) -> dict[str, Any]:
        o = self.config["optim"]
        optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=o["lr"], betas=(o["beta1"], o["beta2"]), weight_decay=o["weight_decay"]
        )
        total, warmup, schedule = self.config["trainer"]["max_steps"], o["warmup_steps"], o["schedule"]

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if schedule == "cosine":
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
            return 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["flowkit"] = {"format": CHECKPOINT_FORMAT, "config": self.config, "data_shape": list(self.data_shape)}
        if hasattr(self.method, "state_dict"):  # a method with training state of its own (a target network)
            checkpoint["flowkit"]["method_state"] = self.method.state_dict()
        self.last_saved_step = self.global_step

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("flowkit", {}).get("method_state")
        if state is not None:
            self.method.load_state_dict(state)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints through ``write_atomically``: readers only ever see a whole checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        write_atomically(path, lambda tmp: super(AtomicCheckpointIO, self).save_checkpoint(checkpoint, tmp, storage_options))


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def make_trainer(cfg: dict[str, Any], run_dir: Path) -> L.Trainer:
    t = cfg["trainer"]
    callbacks: list[L.Callback] = [
        EMAWeightAveraging(decay=cfg["optim"]["ema_decay"]),
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
        gradient_clip_val=t["gradient_clip_val"],
        enable_progress_bar=t["enable_progress_bar"],
        enable_model_summary=False,
        logger=CSVLogger(save_dir=run_dir, name="logs", version=""),  # pinned: resume appends
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )
