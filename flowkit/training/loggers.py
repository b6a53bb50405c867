"""Loggers: the CSV log a resumed run appends to without losing a row, and the logger ``trainer.logger`` adds."""

from __future__ import annotations

import csv
import importlib.util
import netrc
import os
import socket
import urllib.parse
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
    if name == "wandb":
        check_wandb()


OFFLINE_HINT = "or set WANDB_MODE=offline to log into RUN/wandb and 'wandb sync' it later"


def check_wandb() -> None:
    """What makes a Weights & Biases run fail after the run directory exists, said before: a ``wandb`` folder
    (wandb's own run files) found instead of the package; online mode without a login (``WANDB_API_KEY`` or
    ~/.netrc); online mode without a connection to its server (tried for 5 s, not wandb's two minutes)."""
    spec = importlib.util.find_spec("wandb")
    if spec is not None and spec.origin is None:  # a namespace package: a plain folder named wandb on the path
        where = next(iter(spec.submodule_search_locations or []), "?")
        raise ConfigError(f"trainer.logger=wandb: 'wandb' is the folder {where}, not the installed package (wandb's "
                          f"run files?); run from another folder, or rename it")
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return
    url = urllib.parse.urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    host, port = url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)
    if not os.environ.get("WANDB_API_KEY") and not _netrc_login(host):
        raise ConfigError(f"trainer.logger=wandb: not logged in to Weights & Biases (no WANDB_API_KEY, no {host} "
                          f"entry in ~/.netrc): run 'wandb login', {OFFLINE_HINT}")
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise ConfigError(f"trainer.logger=wandb: cannot reach {host}:{port} ({exc.strerror or exc}); check the "
                          f"network, {OFFLINE_HINT}") from None


def _netrc_login(host: str) -> bool:
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


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
