"""Shards: a dataset written once into files of a few MB (``flowkit encode``) and streamed from them in training
(``data.target=shards:DIR``), so that memory stays flat in the dataset's size.

A shard folder holds:

    job.json              the encoding job (written first: ``flowkit encode`` resumes only the same job)
    shard-000000.x.npy    rows in one fixed shuffled order (every shard a fair sample of the set): (n, V, *shape)
    ...                   uint8 pixels (images, exact) or float codes (the posterior's mean), beside them
                          ``shard-000000.std.npy`` for a stochastic encoder and ``shard-000000.y.npy`` the labels;
                          V = 2 views (the image and its mirror) when encoded with ``data.flip``, else 1. The ``.x``
                          file is written last: a shard is whole when it is there
    labels.npy            every row's label in the shards' order (labelled data)
    reference.npy         the real data samples are scored against, as the dataset draws its reference
    index.json            what the folder holds (written last: a folder without it is an unfinished encoding)

Training reads epochs: epoch e permutes the shards (seeded by the run's seed and e); process ``rank`` of
``ranks`` takes shards rank, rank + ranks, ... of that order (each DDP rank its own part, disjoint within the
epoch), reads them ``mix`` at a time and permutes the rows of those ``mix`` shards together. Rank r's batch k is
rows [k n, (k + 1) n) of that endless sequence: a pure function of (seed, k, rank, ranks), so a run killed in
the middle of an epoch resumes with the same batches, for any number of loader processes. A loader process holds
at most ``mix`` + 1 shards (``shard_mb`` each) whatever the dataset's size, memory-mapped: the rows a batch
takes are copied out of the page cache, and nothing of a shard stays in the process once it leaves the cache.

Why not LitData or WebDataset: LitData needs torchvision (no CPU build here) and resumes through its loader's
saved state, which ties a resume to the number of workers; WebDataset reads tar streams in order, so batch k of
an epoch cannot be reached without reading what precedes it. Plain ``.npy`` shards with a seeded epoch order
keep flowkit's resume contract (batch k from (seed, k, rank)) and need nothing beyond numpy.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowkit.runtime.checkpoint import write_atomically
from flowkit.data.contract import Dataset, register_dataset
from flowkit.data.images import to_unit
from flowkit.data.stores import RowStore, one_view
from flowkit.errors import ConfigError
from flowkit.metrics.distances import w2

FORMAT = 1
INDEX, JOB, LABELS, REFERENCE = "index.json", "job.json", "labels.npy", "reference.npy"
DTYPES = ("float32", "float16")


def shard_file(root: Path, i: int, part: str = "x") -> Path:
    """Shard ``i``'s file of ``part``: x (the rows; written last), std, y."""
    return root / f"shard-{i:06d}.{part}.npy"


def seed_of(*numbers: int) -> int:
    """A generator seed from integers (tuples of ints hash the same in every process)."""
    return hash(numbers) & 0x7FFF_FFFF_FFFF_FFFF


def read_index(root: str | Path) -> dict[str, Any]:
    """A finished shard folder's index; a folder without one is a ConfigError saying how to finish it."""
    root = Path(root)
    where = f"data.target=shards:{root}"
    if not root.is_dir():
        raise ConfigError(f"{where}: no such folder")
    if not (root / INDEX).is_file():
        hint = ("an unfinished flowkit encode (run the same command again to finish it)" if (root / JOB).is_file()
                else "not written by flowkit encode")
        raise ConfigError(f"{where}: no {INDEX}: {hint}")
    try:
        index = json.loads((root / INDEX).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: {INDEX} cannot be read ({' '.join(str(exc).split())})") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise ConfigError(f"{where}: {INDEX} is not a flowkit shard index of format {FORMAT}")
    missing = [shard_file(root, i).name for i in range(len(index["shards"])) if not shard_file(root, i).is_file()]
    if missing:
        raise ConfigError(f"{where}: {len(missing)} shard files are missing ({', '.join(missing[:3])}); encode again")
    return index


class ShardStore(RowStore):
    """The rows of a shard folder, read a shard at a time (module docstring: the epoch order)."""

    def __init__(self, root: str | Path, index: dict[str, Any], mix: int = 2) -> None:
        if mix < 1:
            raise ValueError(f"mix={mix} is out of range; expected >= 1 (shards read and permuted together)")
        self.root, self.index, self.mix = Path(root), index, mix
        self.count, self.shape, self.views = index["count"], tuple(index["shape"]), index["views"]
        self.sizes = [int(rows) for rows in index["shards"]]
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)])
        labels = self.root / LABELS
        self.labels = torch.from_numpy(np.load(labels, allow_pickle=False)).long() if labels.is_file() else None
        self._cache: OrderedDict[int, tuple[Tensor, Tensor | None]] = OrderedDict()
        self._epochs: dict[tuple[int, int, int, int], Tensor] = {}
        self._lengths: dict[tuple[int, int, int, int], int] = {}

    def _shard(self, i: int) -> tuple[Tensor, Tensor | None]:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        def mapped(part: str) -> Tensor:
            with warnings.catch_warnings():  # read-only: nothing writes into a shard
                warnings.filterwarnings("ignore", message=".*non-writable.*")
                return torch.from_numpy(np.load(shard_file(self.root, i, part), mmap_mode="r", allow_pickle=False))

        try:
            x = mapped("x")
            std = mapped("std") if self.index["std"] else None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{shard_file(self.root, i)}: cannot be read ({' '.join(str(exc).split())})") from None
        self._cache[i] = (x, std)
        while len(self._cache) > self.mix + 1:
            self._cache.popitem(last=False)
        return x, std

    def fetch(self, rows: Tensor) -> tuple[Tensor, Tensor | None]:
        """Rows read shard by shard (each shard's rows in one gather), put back in the order asked."""
        shard = torch.from_numpy(np.searchsorted(self.starts, rows.numpy(), side="right") - 1)
        order = torch.argsort(shard, stable=True)
        ids, counts = torch.unique_consecutive(shard.index_select(0, order), return_counts=True)
        pieces, stds, at = [], [], 0
        for i, count in zip(ids.tolist(), counts.tolist()):
            local = rows.index_select(0, order[at:at + count]) - int(self.starts[i])
            xs, ss = self._shard(i)
            pieces.append(xs.index_select(0, local))
            stds.append(None if ss is None else ss.index_select(0, local))
            at += count
        back = torch.argsort(order)
        x = torch.cat(pieces).index_select(0, back)
        return x, None if stds[0] is None else torch.cat(stds).index_select(0, back)

    def random_rows(self, n: int, generator: torch.Generator) -> Tensor:
        """A fair random draw read from few shards: each shard is a uniform sample of the set (rows were shuffled
        when written), so whole shards in random order are taken until they hold ``n`` rows."""
        if n >= self.count:
            return torch.randint(self.count, (n,), generator=generator)
        order, rows, held = torch.randperm(len(self.sizes), generator=generator).tolist(), [], 0
        for i in order:
            rows.append(torch.arange(int(self.starts[i]), int(self.starts[i + 1])))
            held += self.sizes[i]
            if held >= n:
                break
        rows = torch.cat(rows)
        return rows[torch.randperm(rows.shape[0], generator=generator)[:n]]

    def _mine(self, epoch: int, seed: int, rank: int, ranks: int) -> list[int]:
        if len(self.sizes) < ranks:
            raise ConfigError(f"shards:{self.root} has {len(self.sizes)} shards, fewer than the {ranks} training "
                              f"processes (each reads its own); encode again with a smaller shard_mb")
        order = torch.randperm(len(self.sizes), generator=torch.Generator().manual_seed(seed_of(seed, epoch, -1)))
        return order[rank::ranks].tolist()

    def epoch_order(self, epoch: int, seed: int, rank: int, ranks: int) -> Tensor:
        """The rows process ``rank`` reads in epoch ``epoch``, in order."""
        key = (epoch, seed, rank, ranks)
        if key not in self._epochs:
            mine, pieces = self._mine(epoch, seed, rank, ranks), []
            for w in range(0, len(mine), self.mix):
                rows = torch.cat([torch.arange(int(self.starts[i]), int(self.starts[i + 1])) for i in mine[w:w + self.mix]])
                generator = torch.Generator().manual_seed(seed_of(seed, epoch, rank, ranks, w))
                pieces.append(rows[torch.randperm(rows.shape[0], generator=generator)])
            while len(self._epochs) >= 2:  # the epoch a batch straddles into, and the one before
                self._epochs.pop(next(iter(self._epochs)))
            self._epochs[key] = torch.cat(pieces)
        return self._epochs[key]

    def _length(self, epoch: int, seed: int, rank: int, ranks: int) -> int:
        key = (epoch, seed, rank, ranks)
        if key not in self._lengths:
            self._lengths[key] = sum(self.sizes[i] for i in self._mine(epoch, seed, rank, ranks))
        return self._lengths[key]

    def epoch_rows(self, step: int, n: int, seed: int, rank: int, ranks: int) -> Tensor:
        position, epoch = step * n, 0
        while position >= (length := self._length(epoch, seed, rank, ranks)):
            position, epoch = position - length, epoch + 1
        rows = []
        while n > 0:
            order = self.epoch_order(epoch, seed, rank, ranks)
            rows.append(order[position:position + n])
            n -= rows[-1].shape[0]
            position, epoch = 0, epoch + 1
        return torch.cat(rows)


class Scored(Dataset):
    """What a shard folder is scored by: its stored reference (real data), in data space, and FD in its feature
    network (``features``, from the encoding or given again) or W2."""

    def __init__(self, root: Path, index: dict[str, Any], features: str | None = None) -> None:
        self.root, self.index = root, index
        self.shape = tuple(index["data_shape"])
        self.pixels = bool(index["pixels"])
        self.bin_width = 2 / 255 if self.pixels else None
        self.num_classes = int(index["num_classes"])
        self.features = features or index["features"]
        if self.features is not None:
            from flowkit.metrics.features import metric_name

            self.metric = metric_name(self.features)
        self._reference: Tensor | None = None

    def reference(self, n: int, generator: torch.Generator) -> Tensor:
        """The stored reference, each row at most once (then repeats when ``n`` exceeds it)."""
        if self._reference is None:
            stored = torch.from_numpy(np.load(self.root / REFERENCE, allow_pickle=False))
            self._reference = to_unit(stored) if self.pixels else stored.float()
        count = self._reference.shape[0]
        rows = torch.cat([torch.randperm(count, generator=generator) for _ in range(-(-n // count))])[:n]
        return self._reference[rows]

    def quality(self, samples: Tensor, reference: Tensor) -> float:
        if self.features is None:
            return w2(samples, reference)
        from flowkit.metrics.features import fd

        return fd(samples, reference, self.features)


class ShardRows(Scored):
    """The rows of a shard folder of data (no encoder): drawn by epochs in training, at random otherwise, with a
    random mirror image for half the draws when encoded with ``data.flip``."""

    def __init__(self, root: Path, index: dict[str, Any], store: ShardStore, features: str | None = None) -> None:
        super().__init__(root, index, features)
        self.store, self.count, self.labels, self.flip = store, store.count, store.labels, bool(index["flip"])

    def _draw(self, rows: Tensor, generator: torch.Generator) -> Tensor:
        x = one_view(self.store.fetch(rows)[0], None, generator)[0]
        x = to_unit(x) if self.pixels else x.float()
        if self.flip:
            mirrored = torch.rand(rows.shape[0], generator=generator) < 0.5
            x = torch.where(mirrored.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)
        return x

    def read(self, rows: Tensor) -> tuple[Tensor, Tensor | None]:
        x = self.store.fetch(rows)[0][:, 0]
        return to_unit(x) if self.pixels else x.float(), None if self.labels is None else self.labels[rows]

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self._draw(self.store.random_rows(n, generator), generator)

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.labels is None:
            raise ConfigError(f"shards:{self.root} holds no labels")
        rows = self.store.random_rows(n, generator)
        return self._draw(rows, generator), self.labels[rows]

    def training_batch(self, step: int, n: int, generator: torch.Generator, seed: int = 0, rank: int = 0,
                       ranks: int = 1, labelled: bool = False) -> tuple[Tensor, Tensor | None]:
        if labelled and self.labels is None:
            raise ConfigError(f"shards:{self.root} holds no labels")
        rows = self.store.epoch_rows(step, n, seed, rank, ranks)
        return self._draw(rows, generator), self.labels[rows] if labelled else None


@register_dataset("shards")
def shards(root: str = "", features: str | None = None, mix: int = 2) -> Dataset:
    """Rows written by ``flowkit encode`` (``data.target=shards:DIR``): streamed by epochs, each DDP rank its own
    part, memory flat in the set's size; latent codes when encoded with an encoder (decoded to be scored)."""
    index = read_index(root)
    store = ShardStore(root, index, mix)
    if index["encoder"] is None:
        return ShardRows(Path(root), index, store, features)
    from flowkit.data.encoders import build_encoder
    from flowkit.data.latent import Latent

    scored = Scored(Path(root), index, features)
    return Latent(scored, build_encoder(index["encoder"], scored.shape), index["encoder"], codes=store)


def write_shards(dataset: Dataset, out: Path, job: dict[str, Any], coder=None, *, flip: bool = False,
                 shard_mb: float = 8.0, reference: int = 2000, dtype: str = "float32", seed: int = 0) -> dict[str, Any]:
    """Write ``dataset`` (finite: ``count`` / ``read``) to the shard folder ``out``, through ``coder``
    (``flowkit.data.latent.Coder``) when given; resumable: shards already written (each written atomically) are
    kept when the same ``job`` runs again after a kill, and a finished folder is left as it is. Returns the index."""
    from flowkit.runtime.rundir import RunLock
    from flowkit.runtime.ticker import Ticker

    if dataset.count is None:
        raise ConfigError("flowkit encode: the target is a distribution, not a finite set of rows to encode "
                          "(use images, digits, an array)")
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not one of: {', '.join(DTYPES)}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"out={str(out)!r}: cannot create the folder ({exc.strerror or exc})") from None
    with RunLock(out, what="shard folder", by="flowkit encode"):
        if (out / JOB).is_file():
            before = json.loads((out / JOB).read_text())
            if before != job:
                changed = sorted(k for k in set(before) | set(job) if before.get(k) != job.get(k))
                raise ConfigError(f"out={out} holds another encoding (it differs in {', '.join(changed)}); give another "
                                  f"out= folder, or delete this one")
        else:
            write_atomically(out / JOB, lambda p: p.write_text(json.dumps(job, indent=2)))
        if (out / INDEX).is_file():
            return json.loads((out / INDEX).read_text())
        count, views = dataset.count, 2 if flip and coder is not None else 1
        shape = tuple(coder.encoder.latent_shape(tuple(dataset.shape)) if coder is not None else dataset.shape)
        pixels = dataset.pixels and coder is None
        stored = np.uint8 if pixels else np.dtype(dtype)
        row_bytes = views * math.prod(shape) * np.dtype(stored).itemsize * (2 if coder is not None else 1)
        per_shard = max(1, int(shard_mb * 2**20) // row_bytes)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
        starts = list(range(0, count, per_shard))
        done = sum(min(per_shard, count - start) for i, start in enumerate(starts) if shard_file(out, i).is_file())
        what = f"encoding with {job['encoder']}" if coder is not None else "writing shards"
        with Ticker(what, count, "rows", start=done) as tick:
            for i, start in enumerate(starts):
                if shard_file(out, i).is_file():
                    continue
                x, y = dataset.read(order[start:start + per_shard])
                if coder is not None:
                    mean, std = coder.encode(x, views)
                    arrays = {"x": mean.numpy().astype(stored), **({} if std is None else {"std": std.numpy().astype(stored)})}
                elif pixels:
                    arrays = {"x": x.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).unsqueeze(1).numpy()}
                else:
                    arrays = {"x": x.unsqueeze(1).numpy().astype(stored)}
                if y is not None:
                    arrays["y"] = y.numpy()
                for part in sorted(arrays, key=lambda k: k == "x"):  # x last: its file marks the shard whole
                    write_atomically(shard_file(out, i, part), lambda p: _save_npy(p, arrays[part]))
                done += x.shape[0]
                tick(done)
        if dataset.num_classes:
            labels = np.concatenate([np.load(shard_file(out, i, "y")) for i in range(len(starts))])
            write_atomically(out / LABELS, lambda p: _save_npy(p, labels))
        real = dataset.reference(min(reference, count), torch.Generator().manual_seed(seed + 1))
        real = real.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8) if dataset.pixels else real.float()
        write_atomically(out / REFERENCE, lambda p: _save_npy(p, real.numpy()))
        index = {"format": FORMAT, "count": count, "shape": list(shape), "views": views, "dtype": np.dtype(stored).name,
                 "std": shard_file(out, 0, "std").is_file(),
                 "shard_rows": per_shard, "shards": [min(per_shard, count - s) for s in starts],
                 "encoder": job["encoder"], "data_shape": list(dataset.shape), "pixels": bool(dataset.pixels),
                 "flip": bool(flip and coder is None), "num_classes": int(dataset.num_classes),
                 "features": dataset.features, "reference": int(real.shape[0]), "data": job["data"]}
        write_atomically(out / INDEX, lambda p: p.write_text(json.dumps(index, indent=2)))
        return index


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array)
