"""Reading flowkit checkpoints safely (``weights_only=True``: loading never runs code from the file)."""

from __future__ import annotations

import errno
import os
import pickle
import re
import secrets
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from flowkit.errors import ConfigError, WriteError

CHECKPOINT_FORMAT = 2  # 2: networks composed from a backbone and the inputs its method needs; method state


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory means its ``last.ckpt``."""
    path = Path(path)
    if path.is_dir():
        if not (path / "last.ckpt").is_file():
            raise ConfigError(f"run directory '{path}' has no last.ckpt")
        return path / "last.ckpt"
    if not path.is_file():
        raise ConfigError(f"no checkpoint or run directory at '{path}'")
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a flowkit run; a missing, truncated, unsafe or foreign file is a ConfigError."""
    path = resolve_checkpoint(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())
        if isinstance(exc, pickle.UnpicklingError):
            named = re.search(r"GLOBAL ([\w.]+)|Unsupported global: GLOBAL ([\w.]+)", reason)
            what = f"a reference to {named.group(1) or named.group(2)}" if named else "content outside plain tensors and containers"
            raise ConfigError(f"checkpoint '{path}' holds {what}; refused (loading never runs code from a file)") from None
        raise ConfigError(f"checkpoint '{path}' cannot be read: truncated or not a torch checkpoint") from None
    if not isinstance(ckpt, dict) or "flowkit" not in ckpt or "state_dict" not in ckpt:
        raise ConfigError(f"checkpoint '{path}' is not a flowkit checkpoint")
    for section in ("state_dict", "current_model_state"):
        weights = ckpt.get(section) or {}
        bad = next((k for k, v in weights.items() if torch.is_tensor(v) and v.is_floating_point()
                    and not torch.isfinite(v).all()), None) if isinstance(weights, dict) else None
        if bad is not None:
            raise ConfigError(f"checkpoint '{path}' holds non-finite weights ({section}: {bad}); refused: samples "
                              f"or a resume from it would be NaN. Use an earlier checkpoint of the run")
    return ckpt


def ema_weights(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The network's EMA weights (Lightning's EMAWeightAveraging stores them as ``state_dict``)."""
    return {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}


def read_matching(path: str | Path, data_shape: tuple[int, ...]) -> tuple[Path, dict[str, Any]]:
    """(file, checkpoint) of a run trained on data of ``data_shape``; another shape is a ConfigError."""
    file = resolve_checkpoint(path)
    ckpt = read_checkpoint(file)
    shape = tuple(ckpt["flowkit"]["data_shape"])
    if shape != tuple(data_shape):
        raise ConfigError(f"teacher '{path}' was trained on data of shape {shape}, but this run's data has shape "
                          f"{tuple(data_shape)}")
    return file, ckpt


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """``write(temporary path)`` then rename over ``path``: a kill mid-write never leaves half a file there, and
    two writers never share a temporary file. A failed write removes its temporary file; a write the disk
    refuses (full, read-only, quota) is a ``WriteError`` naming the file and keeping what was there."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot write '{path}': its folder '{path.parent}' cannot be created "
                         f"({exc.strerror or exc}{': a file is in the way' if exc.errno == errno.EEXIST else ''})") from None
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            kept = "the previous file is kept" if path.exists() else "nothing was written"
            raise WriteError(f"cannot write '{path}': {exc.strerror or exc}; {kept}") from None
        raise
