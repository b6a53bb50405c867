"""The dataset contract and its registry.

A dataset derives from ``Dataset``: a data ``shape`` and ``sample(n, generator) -> (n, *shape)``. It owns
its evaluation, with defaults for any data:

    ``num_classes`` / ``sample_labelled(n, generator)``  its classes (0: none), drawn with the same points
    ``reference(n, generator)``   held-out draws that samples are scored against (default: fresh draws)
    ``metric`` / ``quality(samples, reference)``  the headline number, lower is better (default: "W2",
                                  the exact 2-Wasserstein distance, any shape)
    ``metrics(samples, reference)``  further numbers for ``flowkit eval`` (default: MMD^2)
    ``classify(x)``               the class of each sample, for label accuracy (default: None, no classifier)
    ``bin_width``                 the spacing of the data's quantisation levels, for bits/dim (default: None)
    ``standard_normal``           it is N(0, I): as a source, the score of p_t follows from a model's
                                  prediction, which stochastic samplers need (default: False)

and, for data at scale, hooks with defaults that a small dataset never needs:

    ``prepare()``                 read what draws need, once, before training starts (before the run directory
                                  exists: a bad file fails before anything is written); sampling a trained run
                                  never calls it (default: nothing)
    ``training_batch(step, n, generator, seed, rank, ranks, labelled)``  the batch of training step ``step`` of
                                  process ``rank`` of ``ranks`` in a run of seed ``seed`` (default: ``n`` fresh
                                  draws from ``generator``, itself seeded by (seed, step, rank)); a streamed
                                  dataset reads its epochs instead: the batch is a function of those numbers
    ``count`` / ``read(rows)``    a finite dataset's size and the rows of the given indices, with their labels
                                  (what ``flowkit encode`` writes to shards; default: None, a distribution)
    ``pixels``                    its rows are 8-bit images scaled to [-1, 1] (x = k / 127.5 - 1): shards keep
                                  them as uint8, exactly (default: False)
    ``features``                  the feature network its FD is taken in (``flowkit.features``; None: not FD)
    ``encode(x)`` / ``decode(z)``  between the data and what the model is trained on (latent codes); the
                                  identity by default. Samples are decoded before they are scored or written.
    ``encoded_by``                the ``data.encoder`` spec whose codes it draws (None: the data itself); a
                                  run records it, so its samples decode without the data
    ``evaluation``                the final evaluation's defaults for this data, for the ``eval.*`` keys a
                                  recipe and the command line leave null (default: for images and codes, rows
                                  of three dimensions, a fixed-step sampler on a few hundred samples sized to
                                  the run's training, one draw, nothing compared; for other data, none)

Register with ``@register_dataset("name")`` or the entry-point group ``flowkit.datasets``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flowkit.errors import ConfigError
from flowkit.metrics.distances import mmd2, w2
from flowkit.registry import Registry


IMAGE_EVALUATION = {"solver": "euler:32", "compare": [], "n": 500, "repeats": 1, "sized": True}


class Dataset:
    """Base class of every dataset (module docstring)."""

    shape: tuple[int, ...] = ()
    num_classes: int = 0
    metric: str = "W2"
    bin_width: float | None = None
    standard_normal: bool = False
    count: int | None = None
    pixels: bool = False
    features: str | None = None
    encoded_by: str | None = None

    @property
    def evaluation(self) -> dict:
        """eval.* defaults for this data; ``sized``: n at most what the run's training budget allows."""
        return dict(IMAGE_EVALUATION) if len(self.shape) == 3 else {}

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} defines no sampling")

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        raise ConfigError(f"{type(self).__name__} has no class labels")

    def reference(self, n: int, generator: torch.Generator) -> Tensor:
        return self.sample(n, generator)

    def quality(self, samples: Tensor, reference: Tensor) -> float:
        return w2(samples, reference)

    def metrics(self, samples: Tensor, reference: Tensor) -> dict[str, float]:
        return {"mmd2": mmd2(samples, reference)}

    def classify(self, x: Tensor) -> Tensor | None:
        return None

    def prepare(self) -> None:
        return None

    def training_batch(self, step: int, n: int, generator: torch.Generator, seed: int = 0, rank: int = 0,
                       ranks: int = 1, labelled: bool = False) -> tuple[Tensor, Tensor | None]:
        if labelled:
            return self.sample_labelled(n, generator)
        return self.sample(n, generator), None

    def read(self, rows: Tensor) -> tuple[Tensor, Tensor | None]:
        raise ConfigError(f"{type(self).__name__} is a distribution, not a finite set of rows: nothing to read in order")

    def encode(self, x: Tensor) -> Tensor:
        return x

    def decode(self, z: Tensor) -> Tensor:
        return z


DATASETS: Registry = Registry("dataset", "flowkit.datasets", base=Dataset)
register_dataset = DATASETS.register
