"""Latent data: a dataset seen through an encoder (``data.encoder``), what a latent flow is trained on.

``Latent`` draws codes z = mean + std eps from the posterior of each row (a fresh eps every draw, as latent
diffusion trains; a deterministic encoder has no std), of the image or, with ``data.flip``, of its mirror
encoded beside it (a flip of an image is not a flip of its code). The codes are either encoded once, in
memory, when training starts (``prepare``: small data) or read from the shards ``flowkit encode`` wrote
(``shards:DIR``: data beyond memory, streamed by epochs). Everything a dataset owns besides the draws is the
data's own: the reference draws (real images), the metric, the classifier, taken on decoded samples.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.data.contract import Dataset
from flowkit.data.encoders import Encoder
from flowkit.data.stores import MemoryRows, RowStore, one_view
from flowkit.errors import ConfigError
from flowkit.runtime.memory import batch_that_fits, is_out_of_memory, outputs_per_sample
from flowkit.runtime.ticker import Ticker


def coding_device() -> torch.device:
    """Where encoders run: the GPU when there is one (encoding and decoding are the heavy, batched part)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Coder:
    """An encoder run in batches that fit the device's free memory: its activations per sample are counted once
    per direction (one call at batch 2), and a batch that runs out of memory anyway is halved and run again."""

    def __init__(self, encoder: Encoder, cap: int = 256, device: torch.device | None = None) -> None:
        self.encoder, self.cap = encoder, cap
        self.device = device or coding_device()
        self._batch: dict[str, int] = {}

    def _batch_for(self, which: str, shape: tuple[int, ...]) -> int:
        if which not in self._batch:
            probe = torch.zeros(2, *shape, device=self.device)
            call = (lambda: self.encoder.encode(probe)) if which == "encode" else (lambda: self.encoder.decode(probe))
            numbers = outputs_per_sample(self.encoder, call, 2) + 2 * math.prod(shape)
            self._batch[which] = batch_that_fits(numbers, self.device, self.cap)
        return self._batch[which]

    @torch.no_grad()
    def run(self, which: str, x: Tensor) -> list[Tensor | None]:
        """``encoder.encode`` ((mean, std)) or ``encoder.decode`` ([x]) of ``x`` in batches, results on the CPU."""
        self.encoder.to(self.device)
        fn = self.encoder.encode if which == "encode" else (lambda z: (self.encoder.decode(z),))
        out: list[list[Tensor | None]] = []
        start = 0
        while start < x.shape[0]:
            size = self._batch_for(which, tuple(x.shape[1:]))
            try:
                parts = fn(x[start:start + size].to(self.device, torch.float32))
            except Exception as exc:  # an estimate that missed: halve the batch and try again
                if not is_out_of_memory(exc) or size == 1:
                    raise
                self._batch[which] = max(1, size // 2)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            out.append([None if p is None else p.float().cpu() for p in parts])
            start += size
        return [None if column[0] is None else torch.cat(column) for column in zip(*out)]

    def encode(self, x: Tensor, views: int) -> tuple[Tensor, Tensor | None]:
        """(mean, std) of ``x`` as (n, views, *latent_shape): the image, and with two views its mirror too."""
        coded = [self.run("encode", x if v == 0 else x.flip(-1)) for v in range(views)]
        mean = torch.stack([c[0] for c in coded], 1)
        std = None if coded[0][1] is None else torch.stack([c[1] for c in coded], 1)
        return mean, std

    def decode(self, z: Tensor) -> Tensor:
        return self.run("decode", z)[0]


class Latent(Dataset):
    """The codes of ``data`` under ``encoder`` (``encoded_by``: its ``data.encoder`` spec); ``codes`` a row store of
    them, or None to encode ``data`` in memory when training starts (``prepare``), two views each with ``flip``."""

    def __init__(self, data: Dataset, encoder: Encoder, encoded_by: str, codes: RowStore | None = None,
                 flip: bool = False) -> None:
        self.data, self.encoded_by, self.flip = data, encoded_by, flip
        self.coder = Coder(encoder)
        self.shape = tuple(encoder.latent_shape(tuple(data.shape)))
        self.codes = codes
        self.num_classes = data.num_classes
        self.metric, self.features = data.metric, data.features
        self.count = data.count if codes is None else codes.count

    def prepare(self) -> None:
        """Encode every row of the data once (in memory), with a progress bar or lines."""
        if self.codes is not None:
            return
        if self.data.count is None:
            raise ConfigError(f"data.encoder={self.encoded_by}: the target is a distribution, not a finite set of rows "
                              f"to encode (use images, digits, an array, or shards from flowkit encode)")
        count = self.data.count
        means, stds, labels = [], [], []
        step = 4 * self.coder.cap
        with Ticker(f"encoding with {self.encoded_by}", count, "images") as tick:
            for start in range(0, count, step):
                x, y = self.data.read(torch.arange(start, min(start + step, count)))
                mean, std = self.coder.encode(x, 2 if self.flip else 1)
                means.append(mean)
                stds.append(std)
                labels.append(y)
                tick(start + x.shape[0])
        self.codes = MemoryRows(torch.cat(means), None if stds[0] is None else torch.cat(stds),
                                None if labels[0] is None else torch.cat(labels))

    def _store(self) -> RowStore:
        if self.codes is None:
            self.prepare()
        return self.codes

    def _draw(self, rows: Tensor, generator: torch.Generator) -> Tensor:
        mean, std = one_view(*self._store().fetch(rows), generator)
        mean = mean.float()
        if std is None:
            return mean
        return mean + std.float() * torch.randn(mean.shape, generator=generator)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self._draw(self._store().random_rows(n, generator), generator)

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        store = self._store()
        if store.labels is None:
            raise ConfigError(f"{type(self.data).__name__} has no class labels")
        rows = store.random_rows(n, generator)
        return self._draw(rows, generator), store.labels[rows]

    def training_batch(self, step: int, n: int, generator: torch.Generator, seed: int = 0, rank: int = 0,
                       ranks: int = 1, labelled: bool = False) -> tuple[Tensor, Tensor | None]:
        store = self._store()
        rows = store.epoch_rows(step, n, seed, rank, ranks)
        if rows is None:
            return super().training_batch(step, n, generator, seed, rank, ranks, labelled)
        if labelled and store.labels is None:
            raise ConfigError(f"{type(self.data).__name__} has no class labels")
        return self._draw(rows, generator), store.labels[rows] if labelled else None

    def encode(self, x: Tensor) -> Tensor:
        """The posterior's mean: the code an image is inverted from."""
        return self.coder.run("encode", x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return self.coder.decode(z)

    def reference(self, n: int, generator: torch.Generator) -> Tensor:
        return self.data.reference(n, generator)

    def quality(self, samples: Tensor, reference: Tensor) -> float:
        return self.data.quality(self.decode(samples), reference)

    def metrics(self, samples: Tensor, reference: Tensor) -> dict[str, float]:
        return self.data.metrics(self.decode(samples), reference)

    def classify(self, x: Tensor) -> Tensor | None:
        return self.data.classify(self.decode(x))
