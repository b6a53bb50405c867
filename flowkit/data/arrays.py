"""User arrays: ``.npy`` / ``.pt`` files of samples (``data.path``), read without running code from the file, and
``Rows``, a finite array drawn uniformly with replacement and scored by the generic metrics (any shape)."""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from flowkit.runtime.checkpoint import safe_load
from flowkit.data.contract import Dataset
from flowkit.errors import ConfigError
from flowkit.runtime.memory import check_fits, size


INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class Rows(Dataset):
    """A finite array of samples, drawn uniformly with replacement; scored by the generic metrics."""

    def __init__(self, data: Tensor, label: str, labels: Tensor | None = None, num_classes: int = 0) -> None:
        if data.dtype == torch.bool or data.is_complex() or not (data.is_floating_point() or data.dtype in INTEGER_DTYPES):
            raise ConfigError(f"{label}: holds {str(data.dtype).removeprefix('torch.')} values; expected real numbers "
                              f"(a float or integer array)")
        if data.dim() < 2 or data.shape[0] == 0:
            raise ConfigError(f"{label}: expected an array of shape (n >= 1, *data_shape); got {tuple(data.shape)}")
        self.data = data.float()  # float64 beyond float32's range becomes inf here, so check after
        if not torch.isfinite(self.data).all():
            bad = int((~torch.isfinite(self.data)).flatten(1).any(1).sum())
            raise ConfigError(f"{label}: {bad} of {data.shape[0]} samples hold NaN, inf or values beyond float32's "
                              f"range (|x| > 3.4e38)")
        if data.shape[0] < 2 or bool((self.data == self.data[:1]).all()):
            raise ConfigError(f"{label}: all {data.shape[0]} samples are the same point; a distribution to learn needs "
                              f"at least 2 distinct samples")
        self.shape = tuple(self.data.shape[1:])
        self.label = label
        self.labels = labels
        self.num_classes = num_classes if labels is not None else 0

    @property
    def count(self) -> int:
        return self.data.shape[0]

    def read(self, rows: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.data[rows], None if self.labels is None else self.labels[rows]

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.data[torch.randint(self.data.shape[0], (n,), generator=generator)]

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.labels is None:
            return super().sample_labelled(n, generator)
        rows = torch.randint(self.data.shape[0], (n,), generator=generator)
        return self.data[rows], self.labels[rows]


def load_array(path: str | Path, key: str = "data.path") -> Tensor:
    """Load ``.npy`` or ``.pt`` samples without running code from the file (``key``: the setting that named it)."""
    if not str(path).strip():
        raise ConfigError(f"{key} is empty: give a .npy or .pt file of samples"
                          + (", or leave it unset (null) to draw from data.target" if key == "data.path" else ""))
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}={str(path)!r}: no such file")
    if path.suffix == ".npy":
        check_npy_header(path, key)
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (ValueError, EOFError) as exc:
            raise ConfigError(f"{key}={str(path)!r}: not a plain numeric .npy array ({exc})") from None
    if path.suffix == ".pt":
        value = safe_load(path, f"{key}={str(path)!r}")
        if not isinstance(value, Tensor):
            raise ConfigError(f"{key}={str(path)!r}: holds a {type(value).__name__}, expected a tensor")
        return value
    raise ConfigError(f"{key}={str(path)!r}: unsupported suffix '{path.suffix}'; valid: .npy, .pt")


def check_npy_header(path: Path, key: str = "data.path") -> None:
    """What a ``.npy`` file claims, checked before anything is allocated (the array is memory-mapped, not read):
    numbers, not strings, records or objects; a shape whose bytes the file really holds (a header claiming
    (10**12, 2) is refused, not allocated)."""
    where = f"{key}={str(path)!r}"
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as exc:  # EOFError: a file of zero bytes
        size = path.stat().st_size
        raise ConfigError(f"{where}: not a plain numeric .npy array, or shorter than its header claims "
                          f"({size:,} bytes on disk; {' '.join(str(exc).split())})") from None
    dtype = mapped.dtype
    del mapped
    if dtype.kind not in "biufc":  # bool and complex are refused by Rows, with their own message
        raise ConfigError(f"{where}: holds {dtype} values ({'records' if dtype.names else 'not numbers'}); expected "
                          f"real numbers (a float or integer array)")


UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)


def read_npz(path: Path, where: str, names: Callable[[list[str]], list[str]]) -> dict[str, np.ndarray]:
    """The members ``names(members)`` of a ``.npz``, each checked before anything is allocated: its header's
    bytes within what the member holds (a header claiming 11 GB in 16 bytes is refused, not allocated) and within
    the memory free; a truncated, damaged (CRC) or empty archive is one ``ConfigError`` naming ``where``."""
    def unreadable(reason: object) -> ConfigError:
        return ConfigError(f"{where}: not a readable .npz of arrays ({' '.join(str(reason).split())})")

    try:
        with zipfile.ZipFile(path) as archive:
            members = {i.filename.removesuffix(".npy"): i for i in archive.infolist() if i.filename.endswith(".npy")}
            if not members:
                raise ConfigError(f"{where}: the archive holds no arrays")
            out = {}
            for name in names(list(members)):
                info = members[name]
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0(f))
                    claimed, held = math.prod(shape) * dtype.itemsize, info.file_size - f.tell()
                if claimed > held:
                    raise ConfigError(f"{where}: member '{name}' is shorter than its header claims ({dtype} of shape "
                                      f"{shape}: {size(claimed)} in {size(held)})")
                check_fits(f"{where} ('{name}')", claimed)
                with archive.open(info) as f:
                    out[name] = np.lib.format.read_array(f, allow_pickle=False)
            return out
    except UNREADABLE as exc:
        raise unreadable(exc) from None
