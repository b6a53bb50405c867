"""Frozen teachers for distillation and reflow: loaded once from a checkpoint, checked against the data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from flowkit.checkpoint import load_model, read_checkpoint, resolve_checkpoint
from flowkit.errors import ConfigError


def read_matching(path: str | Path, data_shape: tuple[int, ...]) -> tuple[Path, dict[str, Any]]:
    """(file, checkpoint) of a run trained on data of ``data_shape``; another shape is a ConfigError."""
    file = resolve_checkpoint(path)
    ckpt = read_checkpoint(file)
    shape = tuple(ckpt["flowkit"]["data_shape"])
    if shape != tuple(data_shape):
        raise ConfigError(f"teacher '{path}' was trained on data of shape {shape}, but this run's data has shape "
                          f"{tuple(data_shape)}")
    return file, ckpt


def check_shape(path: str | Path, data_shape: tuple[int, ...]) -> Path:
    """The checkpoint file, checked against ``data_shape``; its weights are loaded later, when needed."""
    return read_matching(path, data_shape)[0]


def load_teacher(path: str | Path) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(frozen EMA network, its method, its config). The network is a plain attribute of whoever holds it,
    never a registered submodule: Lightning's EMA would otherwise copy and average it."""
    cfg, parts = load_model(path)
    return copy.deepcopy(parts.model).eval().requires_grad_(False), parts.method, cfg


def follow_teacher(config: dict[str, Any], old_teacher: str, new_teacher: str | Path) -> dict[str, Any]:
    """The model update for a distillation's next round: a student that was started from its teacher
    (``model.init_from`` equal to the teacher) starts from the new teacher; any other choice stays."""
    if config["model"].get("init_from") == old_teacher:
        return {"model": {"init_from": str(new_teacher)}}
    return {}


class Teacher:
    """A method's teacher: the checkpoint is checked against the data shape when the method is built
    (before any run directory exists) and loaded, frozen, on first use on the training device."""

    def __init__(self, owner: str, path: str, data_shape: tuple[int, ...]) -> None:
        if not path:
            raise ConfigError(f"{owner} needs a teacher: method.teacher=<run dir or .ckpt of a trained flow>")
        self.file = check_shape(path, data_shape)
        self._net: nn.Module | None = None

    def on(self, device: Any) -> nn.Module:
        if self._net is None:
            self._net = load_teacher(self.file)[0]
        return self._net.to(device)
