"""Data: 2-D toys, scikit-learn's bundled digits, user arrays; a Lightning DataModule pairing source and target.

Every dataset is a ``Distribution``: a data ``shape`` and ``sample(n, generator) -> (n, *shape)``.
Toys draw fresh points; finite data (digits, arrays) draws rows uniformly with replacement. The toys
follow TorchCFM (Tong et al. 2024) exactly so that numbers and figures compare:

- ``8gaussians``: centres at radius 5 on the axes and diagonals, covariance sqrt(0.1) I
  (TorchCFM passes var=0.1 into ``sqrt(var) * eye``), i.e. std 0.1**0.25 = 0.562 per axis.
- ``moons``: torchdyn's ``generate_moons(noise=0.2)``: evenly spaced points on two half circles,
  one uniform draw in [0, 0.2) per point added to both coordinates; then ``x * 3 - 1``.
- ``checkerboard``, ``2spirals``: FFJORD's toy data (Grathwohl et al. 2019), as TorchCFM's figures use.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from flowkit.errors import ConfigError
from flowkit.registry import Registry

DATASETS: Registry = Registry("dataset", "flowkit.datasets")
register_dataset = DATASETS.register


class Distribution(Protocol):
    shape: tuple[int, ...]

    def sample(self, n: int, generator: torch.Generator) -> Tensor: ...


class Labelled(Protocol):
    """A distribution with classes: ``sample_labelled`` returns the points ``sample`` would (same draws)
    and their labels in ``0..num_classes-1`` (the toys' mode or piece, the digit)."""

    num_classes: int

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]: ...


LABELLED = ("8gaussians", "moons", "checkerboard", "digits")  # the built-in datasets with labels


def num_classes(distribution: Distribution) -> int:
    """How many classes ``distribution`` labels its samples with; 0 when it has no labels."""
    return getattr(distribution, "num_classes", 0)


@register_dataset("gaussian")
class Gaussian:
    """N(0, I) in the shape of the other side of the pair (2-D when it is the target itself)."""

    def __init__(self, data_shape: tuple[int, ...] = (2,)) -> None:
        self.shape = tuple(data_shape)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n, *self.shape, generator=generator)


@register_dataset("8gaussians")
class EightGaussians:
    shape = (2,)

    def __init__(self, scale: float = 5.0, var: float = 0.1) -> None:
        if scale <= 0 or var <= 0:
            raise ValueError(f"scale={scale}, var={var} are out of range; expected both > 0")
        angles = torch.arange(8) * (math.pi / 4)
        self.centers = scale * torch.stack([angles.cos(), angles.sin()], dim=1)
        self.std = math.sqrt(math.sqrt(var))

    num_classes = 8  # the mode

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        mode = torch.randint(8, (n,), generator=generator)
        return self.centers[mode] + self.std * torch.randn(n, 2, generator=generator), mode


@register_dataset("moons")
class Moons:
    shape = (2,)

    def __init__(self, noise: float = 0.2) -> None:
        if noise < 0:
            raise ValueError(f"noise={noise} is out of range; expected >= 0")
        self.noise = noise

    num_classes = 2  # 0: the outer half circle, 1: the inner one

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        n_out = n // 2
        outer = torch.linspace(0, math.pi, n_out, dtype=torch.float64)
        inner = torch.linspace(0, math.pi, n - n_out, dtype=torch.float64)
        x = torch.cat([torch.stack([outer.cos(), outer.sin()], 1),
                       torch.stack([1 - inner.cos(), 0.5 - inner.sin()], 1)])
        x = x + torch.rand(n, 1, generator=generator, dtype=torch.float64) * self.noise
        # generate_moons returns outer then inner; shuffle so any prefix is a fair sample.
        order = torch.randperm(n, generator=generator)
        return (x * 3 - 1)[order].float(), (torch.arange(n) >= n_out).long()[order]


@register_dataset("checkerboard")
class Checkerboard:
    shape = (2,)

    num_classes = 8  # the square: 4 columns x 2 squares per column

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x1 = torch.rand(n, generator=generator) * 4 - 2
        u = torch.rand(n, generator=generator)
        lower = torch.randint(2, (n,), generator=generator)
        x2 = u - 2 * lower
        x2 = x2 + torch.floor(x1) % 2
        return torch.stack([x1, x2], dim=1) * 2, (torch.floor(x1).long() + 2) * 2 + lower


@register_dataset("2spirals")
class TwoSpirals:
    shape = (2,)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        half = n // 2
        r = torch.sqrt(torch.rand(n - half, 1, generator=generator)) * (540 * 2 * math.pi / 360)
        arm = torch.cat([-torch.cos(r) * r, torch.sin(r) * r], 1) + torch.rand(n - half, 2, generator=generator) * 0.5
        x = torch.cat([arm, -arm[:half]]) / 3
        x = x + 0.1 * torch.randn(n, 2, generator=generator)
        return x[torch.randperm(n, generator=generator)]


class Rows:
    """A finite array of samples, drawn uniformly with replacement."""

    def __init__(self, data: Tensor, label: str, labels: Tensor | None = None, num_classes: int = 0) -> None:
        if data.dim() < 2 or data.shape[0] == 0:
            raise ConfigError(f"{label}: expected an array of shape (n >= 1, *data_shape); got {tuple(data.shape)}")
        if not torch.isfinite(data).all():
            bad = int((~torch.isfinite(data)).flatten(1).any(1).sum())
            raise ConfigError(f"{label}: {bad} of {data.shape[0]} samples hold NaN or inf")
        self.data = data.float()
        self.shape = tuple(self.data.shape[1:])
        self.label = label
        self.labels = labels
        if labels is not None:
            self.num_classes = num_classes

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.data[torch.randint(self.data.shape[0], (n,), generator=generator)]

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = torch.randint(self.data.shape[0], (n,), generator=generator)
        return self.data[rows], self.labels[rows]


DIGITS_TEST_SIZE = 297  # a fixed held-out split of the 1797 images, for FD and likelihoods


@register_dataset("digits")
def digits(split: str = "train") -> Rows:
    """scikit-learn's bundled 8x8 digits (offline), pixel values 0..16 scaled to [-1, 1], shape (1, 8, 8)."""
    from sklearn.datasets import load_digits

    if split not in ("train", "test", "all"):
        raise ValueError(f"split='{split}' is not one of: train, test, all")
    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div(16).mul(2).sub(1).unsqueeze(1)
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
    index = {"train": order[DIGITS_TEST_SIZE:], "test": order[:DIGITS_TEST_SIZE], "all": order}[split]
    return Rows(images[index], f"digits[{split}]", torch.from_numpy(bunch.target).long()[index], 10)


def load_array(path: str | Path) -> Tensor:
    """Load ``.npy`` or ``.pt`` samples without running code from the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data.path={str(path)!r}: no such file")
    if path.suffix == ".npy":
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except ValueError as exc:
            raise ConfigError(f"data.path={str(path)!r}: not a plain numeric .npy array ({exc})") from None
    if path.suffix == ".pt":
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(f"data.path={str(path)!r}: not a tensor file loadable safely ({exc})") from None
        if not isinstance(value, Tensor):
            raise ConfigError(f"data.path={str(path)!r}: holds a {type(value).__name__}, expected a tensor")
        return value
    raise ConfigError(f"data.path={str(path)!r}: unsupported suffix '{path.suffix}'; valid: .npy, .pt")


def build_pair(source: str, target: str, path: str | None) -> tuple[Distribution, Distribution]:
    """The (source, target) distributions a recipe's ``data`` section names."""
    tgt = Rows(load_array(path), f"data.path={path!r}") if path else DATASETS.build({"name": target})
    src = DATASETS.build({"name": source}, data_shape=tgt.shape)
    if tuple(src.shape) != tuple(tgt.shape):
        raise ConfigError(f"data.source '{source}' has shape {tuple(src.shape)} but the target has {tuple(tgt.shape)}")
    return src, tgt


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A seed that is a pure function of (run seed, optimizer step, process rank): a resumed run
    redraws the same batches, and DDP ranks draw different ones."""
    return hash((seed, step, rank)) & 0x7FFF_FFFF_FFFF_FFFF


class PairStream(IterableDataset):
    """Endless batches {"x0": source, "x1": target[, "y": target labels]}; batch k is drawn from
    ``step_seed(seed, k, rank)``. ``labelled`` adds the target's labels (class-conditional training).

    With a ``coupling`` the stream also pairs each batch (a data-only coupling: independent, ot, sinkhorn),
    its random draws seeded by the step too, so that loader processes can solve minibatch OT off the
    training loop. Read by ``workers`` DataLoader processes, worker w draws batches start + w, start + w + W,
    ...; the DataLoader takes them round-robin, so batch k is the same for every number of workers."""

    def __init__(self, source: Distribution, target: Distribution, batch_size: int, seed: int, start: int = 0,
                 rank: int = 0, labelled: bool = False, coupling=None) -> None:
        self.source, self.target = source, target
        self.batch_size, self.seed, self.start, self.rank, self.labelled = batch_size, seed, start, rank, labelled
        self.coupling = coupling

    def __iter__(self):
        worker = get_worker_info()
        step, stride = (self.start + worker.id, worker.num_workers) if worker else (self.start, 1)
        generator = torch.Generator()
        while True:
            generator.manual_seed(step_seed(self.seed, step, self.rank))
            x0 = self.source.sample(self.batch_size, generator)
            if self.labelled:
                x1, y = self.target.sample_labelled(self.batch_size, generator)
                batch = {"x0": x0, "x1": x1, "y": y}
            else:
                batch = {"x0": x0, "x1": self.target.sample(self.batch_size, generator)}
            yield self.coupled(batch, step) if self.coupling is not None else batch
            step += stride

    def coupled(self, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        with torch.random.fork_rng(devices=[]):  # the coupling's draws (e.g. from a sinkhorn plan), per step
            torch.manual_seed(step_seed(self.seed + 2, step, self.rank))
            x0, x1 = self.coupling(batch["x0"], batch["x1"], **({"y": batch["y"]} if self.labelled else {}))
        return {**batch, "x0": x0, "x1": x1}


class PairDataModule(L.LightningDataModule):
    """``workers`` > 0: that many loader processes draw the batches and, given a ``coupling``, pair them
    (minibatch OT on the CPU, overlapped with the training step); 0: drawn in the training process."""

    def __init__(self, source: Distribution, target: Distribution, batch_size: int, seed: int,
                 labelled: bool = False, workers: int = 0, coupling=None) -> None:
        super().__init__()
        self.source, self.target = source, target
        self.batch_size, self.seed, self.labelled = batch_size, seed, labelled
        self.workers, self.coupling = workers, coupling

    def train_dataloader(self) -> DataLoader:
        # On resume Lightning restores global_step before it asks for the loader.
        start, rank = (self.trainer.global_step, self.trainer.global_rank) if self.trainer is not None else (0, 0)
        stream = PairStream(self.source, self.target, self.batch_size, self.seed, start, rank, self.labelled,
                            self.coupling)
        return DataLoader(stream, batch_size=None, num_workers=self.workers, persistent_workers=self.workers > 0)
