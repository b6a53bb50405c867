"""A trained run's target, read only when its data is needed.

What sampling a run needs of its data is in its checkpoint: the shape the model was trained on, the classes,
and the encoder its codes decode with (``data.encoder``, built from its spec; no data read). ``Deferred`` holds
those and builds the dataset itself on the first question only the data can answer (a reference to score
against, the metric, a classifier), so a run samples, inverts and compares after its training data is gone, and
``eval`` says which data it needs when it is.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from flowkit.data.contract import Dataset
from flowkit.errors import ConfigError


class NeedsData(ConfigError):
    """A question only a run's data can answer, asked after that data is gone (``compare`` goes on without it)."""


class Deferred(Dataset):
    """``build()`` on first use of anything but ``shape``, ``num_classes``, ``encoded_by``, ``encode`` and ``decode``
    (through ``coder``, a ``flowkit.data.latent.Coder`` of the run's encoder, or the identity)."""

    def __init__(self, build: Callable[[], Dataset], shape: tuple[int, ...], num_classes: int,
                 encoded_by: str | None = None, coder: Any = None, label: str = "the training data") -> None:
        self._build, self._dataset, self.label = build, None, label
        self.shape, self.num_classes, self.encoded_by, self.coder = tuple(shape), num_classes, encoded_by, coder

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            try:
                dataset = self._build()
            except ConfigError as exc:
                raise NeedsData(f"{exc} (this needs {self.label}; sampling, inverting and comparing the run do "
                                f"not)") from None
            if tuple(dataset.shape) != self.shape:
                raise ConfigError(f"{self.label} now has shape {tuple(dataset.shape)}, but the run was trained on "
                                  f"{self.shape}: it is not the data the run was trained on")
            self._dataset = dataset
        return self._dataset

    def encode(self, x: Tensor) -> Tensor:
        return x if self.coder is None else self.coder.run("encode", x)[0]

    def decode(self, z: Tensor) -> Tensor:
        return z if self.coder is None else self.coder.decode(z)

    # everything else is the data's own
    metric = property(lambda self: self.dataset.metric)
    bin_width = property(lambda self: self.dataset.bin_width)
    standard_normal = property(lambda self: self.dataset.standard_normal)
    count = property(lambda self: self.dataset.count)
    pixels = property(lambda self: self.dataset.pixels)
    features = property(lambda self: self.dataset.features)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.dataset.sample(n, generator)

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.dataset.sample_labelled(n, generator)

    def reference(self, n: int, generator: torch.Generator) -> Tensor:
        return self.dataset.reference(n, generator)

    def quality(self, samples: Tensor, reference: Tensor) -> float:
        return self.dataset.quality(samples, reference)

    def metrics(self, samples: Tensor, reference: Tensor) -> dict[str, float]:
        return self.dataset.metrics(samples, reference)

    def classify(self, x: Tensor) -> Tensor | None:
        return self.dataset.classify(x)

    def prepare(self) -> None:
        self.dataset.prepare()

    def training_batch(self, *args: Any, **kwargs: Any) -> tuple[Tensor, Tensor | None]:
        return self.dataset.training_batch(*args, **kwargs)

    def read(self, rows: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.dataset.read(rows)
