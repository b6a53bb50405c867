"""Reading flowkit checkpoints safely (``weights_only=True``: loading never runs code from the file)."""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import secrets
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

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


def safe_load(path: Path, label: str) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only. A pickle that refers to
    anything else (a function, a class) is refused, naming it; an unreadable file is a ConfigError too."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before refusing
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = " ".join(str(exc).split())
        if isinstance(exc, pickle.UnpicklingError):
            named = re.search(r"GLOBAL ([\w.]+)|Unsupported global: GLOBAL ([\w.]+)", reason)
            what = f"a reference to {named.group(1) or named.group(2)}" if named else "content outside plain tensors and containers"
            raise ConfigError(f"{label} holds {what}; refused (loading never runs code from a file)") from None
        raise ConfigError(f"{label} cannot be read: truncated or not a torch file") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict of a flowkit run; a missing, truncated, unsafe or foreign file is a ConfigError."""
    path = resolve_checkpoint(path)
    ckpt = safe_load(path, f"checkpoint '{path}'")
    if not isinstance(ckpt, dict) or "flowkit" not in ckpt or "state_dict" not in ckpt:
        raise ConfigError(f"checkpoint '{path}' is not a flowkit checkpoint")
    broken = layout_fault(ckpt)
    if broken:
        raise ConfigError(f"checkpoint '{path}' is not a flowkit checkpoint: {broken}")
    for section in ("state_dict", "current_model_state"):
        weights = ckpt.get(section) or {}
        bad = next((k for k, v in weights.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
        if bad is not None:
            raise ConfigError(f"checkpoint '{path}' holds non-finite weights ({section}: {bad}); refused: samples "
                              f"or a resume from it would be NaN. Use an earlier checkpoint of the run")
    return ckpt


def layout_fault(ckpt: dict[str, Any]) -> str | None:
    """What is wrong with the layout of a checkpoint dict (None: nothing): the ``flowkit`` section with its
    config, data shape and format, weights as mappings of names to tensors, an integer step."""
    meta = ckpt["flowkit"]
    if not isinstance(meta, dict):
        return f"its 'flowkit' section is a {type(meta).__name__}, expected a mapping"
    for key, kind in (("config", dict), ("data_shape", (list, tuple)), ("format", int)):
        if key not in meta and key != "format":  # format 1 had no "format"
            return f"its 'flowkit' section has no {key}"
        if key in meta and not isinstance(meta[key], kind):
            return f"its flowkit.{key} is a {type(meta[key]).__name__}"
    if not all(isinstance(d, int) and d >= 1 for d in meta["data_shape"]):
        return f"its flowkit.data_shape {meta['data_shape']!r} is not a shape"
    if not isinstance(meta.get("method_state", {}), dict):
        return f"its flowkit.method_state is a {type(meta['method_state']).__name__}"
    for section in ("state_dict", "current_model_state"):
        weights = ckpt.get(section, {})
        if not isinstance(weights, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in weights.items()):
            return f"its {section} is not a mapping of names to tensors"
    step = ckpt.get("global_step")
    if not isinstance(step, int) or step < 0:
        return f"its global_step {step!r} is not a step"
    return None


def weights_fault(weights: dict[str, Tensor], expected: dict[str, Tensor]) -> str | None:
    """How ``weights`` (a checkpoint's) differ from the tensors ``expected`` (a network's state_dict): missing or
    unexpected names, another shape, integers where floats belong (None: they fit)."""
    missing, unexpected = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
    if missing or unexpected:
        return f"missing {missing[:3]}, unexpected {unexpected[:3]}"
    for key, want in expected.items():
        got = weights[key]
        if got.shape != want.shape:
            return f"{key} has shape {tuple(got.shape)}, the network's is {tuple(want.shape)}"
        if got.is_floating_point() != want.is_floating_point():
            return f"{key} holds {str(got.dtype).removeprefix('torch.')}, the network's {str(want.dtype).removeprefix('torch.')}"
    return None


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
    if path.name in ("", ".", "..") or os.path.isdir(path):
        raise WriteError(f"cannot write '{path}': it is a folder, not a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(f"cannot write '{path}': its folder '{path.parent}' cannot be created "
                         f"({exc.strerror or exc}{': a file is in the way' if exc.errno == errno.EEXIST else ''})") from None
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    name = f".{path.name}.tmp-{token}{path.suffix}"
    # a legal name of up to 255 bytes must not fail on its temporary name's length: shorten that one
    tmp = path.with_name(name if len(os.fsencode(name)) <= 255 else f".flowkit.tmp-{token}{path.suffix[:32]}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None:
            kept = "the previous file is kept" if os.path.lexists(path) else "nothing was written"
            raise WriteError(f"cannot write '{path}': {exc.strerror or exc}; {kept}") from None
        raise


def file_digest(path: str | Path | None) -> str | None:
    """The sha256 of a data file's bytes (read in 1 MiB blocks), recorded in a run's checkpoints so that a resume
    notices a file replaced by another of the same shape; None without a readable file."""
    if not path:
        return None
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()
