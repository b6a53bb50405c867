"""Loggers: the CSV log a resumed run appends to without losing a row, and the logger ``trainer.logger`` adds."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from flowkit.errors import ConfigError
from flowkit.runtime.checkpoint import write_atomically

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
