"""The Lightning Trainer around the one LightningModule (``flowkit.training.module``): the EMA callback, checkpoints
written to a temporary file and renamed (a kill during a save leaves the previous ``last.ckpt`` whole), the
loggers and the progress display.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar

from flowkit.errors import ConfigError
from flowkit.runtime.checkpoint import write_atomically
from flowkit.runtime.progress import ProgressLines
from flowkit.training.ema import EMA
from flowkit.training.loggers import ResumedCSVLogger, extra_loggers

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


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints through ``write_atomically``: readers only ever see a whole checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        write_atomically(path, lambda tmp: super(AtomicCheckpointIO, self).save_checkpoint(checkpoint, tmp, storage_options))


def _devices(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def check_trainer_settings(cfg: dict[str, Any]) -> None:
    """A ConfigError, before any run directory exists, when Lightning refuses ``trainer.accelerator``, ``devices``,
    ``strategy``, ``num_nodes`` or ``precision`` (a throwaway Trainer is built with them: nothing is started)."""
    t = cfg["trainer"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            L.Trainer(accelerator=t["accelerator"], devices=_devices(t["devices"]), strategy=t["strategy"],
                      num_nodes=t["num_nodes"], precision=t["precision"], logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    except Exception as exc:  # noqa: BLE001 - Lightning's MisconfigurationException, ValueError, TypeError...
        said = " ".join(str(exc).split())
        raise ConfigError(f"trainer.accelerator='{t['accelerator']}', trainer.devices='{t['devices']}', "
                          f"trainer.strategy='{t['strategy']}', trainer.num_nodes={t['num_nodes']}: Lightning refuses "
                          f"them ({said[:300]})") from None


def make_trainer(cfg: dict[str, Any], run_dir: Path, manual: bool = False, resumed_at: int | None = None) -> L.Trainer:
    """``manual``: the method optimises its steps itself (``flowkit.training.steps``), which clip gradients themselves.
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
