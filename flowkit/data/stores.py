"""Row stores: where the rows of a dataset that is drawn by row live, in memory or in shards on disk.

A store holds ``count`` rows of ``views`` views each (two for an image encoded with its mirror, else one), and
for latent codes the posterior's std beside its mean:

    ``fetch(rows) -> (x, std)``   x (n, views, *shape) as stored (uint8 pixels or float codes), std alike or None
    ``labels``                    one label per row, or None
    ``random_rows(n, generator)`` rows of a fair random draw
    ``epoch_rows(step, n, seed, rank, ranks)``  the rows of training batch ``step`` of process ``rank``, or None
                                  where batches are fresh random draws (in memory); a shard store reads its epochs

``MemoryRows`` is the in-memory store; ``flowkit.data.shards.ShardStore`` the streamed one.
"""

from __future__ import annotations

import torch
from torch import Tensor


class RowStore:
    """Base class of row stores (module docstring)."""

    count: int
    shape: tuple[int, ...]
    views: int = 1
    labels: Tensor | None = None

    def fetch(self, rows: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def random_rows(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randint(self.count, (n,), generator=generator)

    def epoch_rows(self, step: int, n: int, seed: int, rank: int, ranks: int) -> Tensor | None:
        return None


class MemoryRows(RowStore):
    """Rows held in memory: ``x`` (N, views, *shape), ``std`` alike or None, ``labels`` (N,) or None."""

    def __init__(self, x: Tensor, std: Tensor | None = None, labels: Tensor | None = None) -> None:
        self.x, self.std, self.labels = x, std, labels
        self.count, self.views, self.shape = x.shape[0], x.shape[1], tuple(x.shape[2:])

    def fetch(self, rows: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.x[rows], None if self.std is None else self.std[rows]


def one_view(x: Tensor, std: Tensor | None, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """Of rows (n, views, ...), one view each, drawn uniformly (the image or its mirror)."""
    if x.shape[1] == 1:
        return x[:, 0], None if std is None else std[:, 0]
    view = torch.randint(x.shape[1], (x.shape[0],), generator=generator)
    rows = torch.arange(x.shape[0])
    return x[rows, view], None if std is None else std[rows, view]
