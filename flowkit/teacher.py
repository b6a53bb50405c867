"""Frozen teachers: a trained run loaded once from its checkpoint, checked against the data."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from flowkit.build import SAMPLING, Parts, load_run
from flowkit.checkpoint import read_matching
from flowkit.errors import ConfigError


def check_shape(path: str | Path, data_shape: tuple[int, ...]) -> Path:
    """The checkpoint file, checked against ``data_shape``; its weights are loaded later, when needed."""
    return read_matching(path, data_shape)[0]


def load_teacher(path: str | Path) -> tuple[nn.Module, Parts, dict[str, Any]]:
    """(frozen EMA network, the run's parts, its config). The network is a plain attribute of whoever holds it,
    never a registered submodule: Lightning's EMA would otherwise copy and average it."""
    cfg, parts = load_run(path)
    return copy.deepcopy(parts.model).eval().requires_grad_(False), parts, cfg


def follow_teacher(config: dict[str, Any], old_teacher: str, new_teacher: str | Path) -> dict[str, Any]:
    """The model update for a distillation's next round: a student that was started from its teacher
    (``model.init_from`` equal to the teacher) starts from the new teacher; any other choice stays."""
    if config["model"].get("init_from") == old_teacher:
        return {"model": {"init_from": str(new_teacher)}}
    return {}


class Teacher:
    """A method's teacher: the checkpoint is checked against the data shape when the method is built
    (before any run directory exists) and loaded, frozen, on first use on the training device. A trained run
    rebuilt to be sampled (``flowkit.build.SAMPLING``) does not read it: a student samples without its teacher."""

    def __init__(self, owner: str, path: str, data_shape: tuple[int, ...]) -> None:
        if not path:
            raise ConfigError(f"{owner} needs a teacher: method.teacher=<run dir or .ckpt of a trained flow>")
        self.data_shape = tuple(data_shape)
        self.file = Path(path) if SAMPLING.get() else check_shape(path, data_shape)
        self._net: nn.Module | None = None

    def on(self, device: Any) -> nn.Module:
        if self._net is None:
            self._net = load_teacher(check_shape(self.file, self.data_shape))[0]
        return self._net.to(device)

    def __deepcopy__(self, memo: dict) -> Teacher:
        """Copies (Lightning's EMA copies the module that holds the method) share the frozen network."""
        clone = copy.copy(self)
        memo[id(self)] = clone
        return clone

