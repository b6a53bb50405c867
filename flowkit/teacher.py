"""Frozen teachers for distillation and reflow: loaded once from a checkpoint, checked against the data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from flowkit.checkpoint import load_model, read_checkpoint, resolve_checkpoint
from flowkit.errors import ConfigError


def check_shape(path: str | Path, data_shape: tuple[int, ...]) -> Path:
    """The checkpoint file, after checking it was trained on data of ``data_shape`` (reads the file once)."""
    file = resolve_checkpoint(path)
    shape = tuple(read_checkpoint(file)["flowkit"]["data_shape"])
    if shape != tuple(data_shape):
        raise ConfigError(f"teacher '{path}' was trained on data of shape {shape}, but this run's data has shape "
                          f"{tuple(data_shape)}")
    return file


def load_teacher(path: str | Path) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(frozen EMA network, its method, its config). The network is a plain attribute of whoever holds it,
    never a registered submodule: Lightning's EMA would otherwise copy and average it."""
    cfg, parts = load_model(path)
    return copy.deepcopy(parts.model).eval().requires_grad_(False), parts.method, cfg
