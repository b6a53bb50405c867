"""Datasets: the contract, the 2-D toys, scikit-learn's bundled digits and user arrays.

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

So a user array gets W2 and MMD whatever its shape; the digits score FD in the features of their own
classifier, whose trained weights ship with flowkit. Register with ``@register_dataset("name")`` or the
entry-point group ``flowkit.datasets``.

The toys follow TorchCFM (Tong et al. 2024) exactly so that numbers and figures compare:

- ``8gaussians``: centres at radius 5 on the axes and diagonals, covariance sqrt(0.1) I
  (TorchCFM passes var=0.1 into ``sqrt(var) * eye``), i.e. std 0.1**0.25 = 0.562 per axis.
- ``moons``: torchdyn's ``generate_moons(noise=0.2)``: evenly spaced points on two half circles,
  one uniform draw in [0, 0.2) per point added to both coordinates; then ``x * 3 - 1``.
- ``checkerboard``, ``2spirals``: FFJORD's toy data (Grathwohl et al. 2019), as TorchCFM's figures use.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowkit.checkpoint import safe_load
from flowkit.errors import ConfigError, ContractError
from flowkit.metrics import mmd2, w2
from flowkit.registry import Registry


class Dataset:
    """Base class of every dataset (module docstring)."""

    shape: tuple[int, ...] = ()
    num_classes: int = 0
    metric: str = "W2"
    bin_width: float | None = None
    standard_normal: bool = False

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


def check_dataset(name: str, obj: object) -> None:
    """The registration check: a ``Dataset`` subclass, or a function returning one (checked when built)."""
    if inspect.isclass(obj) and issubclass(obj, Dataset):
        return
    if inspect.isfunction(obj):
        return
    raise ContractError(f"dataset '{name}': {obj!r} does not derive from flowkit.datasets.Dataset")


DATASETS: Registry = Registry("dataset", "flowkit.datasets", check=check_dataset)
register_dataset = DATASETS.register


def build_dataset(spec: dict, **injected) -> Dataset:
    """``DATASETS.build`` that also checks what a factory function returned."""
    dataset = DATASETS.build(spec, **injected)
    if not isinstance(dataset, Dataset):
        raise ContractError(f"dataset '{spec['name']}' built a {type(dataset).__name__}, not a flowkit Dataset")
    return dataset


@register_dataset("gaussian")
class Gaussian(Dataset):
    """N(0, I) in the shape of the other side of the pair (2-D when it is the target itself)."""

    standard_normal = True

    def __init__(self, data_shape: tuple[int, ...] = (2,)) -> None:
        self.shape = tuple(data_shape)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randn(n, *self.shape, generator=generator)


@register_dataset("8gaussians")
class EightGaussians(Dataset):
    """Eight Gaussians of variance ``var`` on a circle of radius ``scale`` (TorchCFM's 8gaussians); labelled by mode."""

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

    def classify(self, x: Tensor) -> Tensor:
        """The nearest mode."""
        return torch.cdist(x.float(), self.centers.to(x.device)).argmin(1)


@register_dataset("moons")
class Moons(Dataset):
    """Two interleaved half circles (scikit-learn's make_moons layout, scaled by 3) with a uniform jitter of size
    ``noise``; labelled by half circle."""

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
class Checkerboard(Dataset):
    """Uniform on the eight black squares of a 4 x 4 board over [-4, 4]^2; labelled by square."""

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

    def classify(self, x: Tensor) -> Tensor:
        """The square's column (4 across [-4, 4)) and half (lower: y < 0), as drawn; outside, the nearest."""
        column = torch.clamp(torch.floor(x[:, 0].float() / 2).long() + 2, 0, 3)
        return column * 2 + (x[:, 1] < 0).long()


@register_dataset("2spirals")
class TwoSpirals(Dataset):
    """Two interleaved spiral arms of 1.5 turns, radius up to about 3.3, with Gaussian noise of std 0.1."""

    shape = (2,)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        half = n // 2
        r = torch.sqrt(torch.rand(n - half, 1, generator=generator)) * (540 * 2 * math.pi / 360)
        arm = torch.cat([-torch.cos(r) * r, torch.sin(r) * r], 1) + torch.rand(n - half, 2, generator=generator) * 0.5
        x = torch.cat([arm, -arm[:half]]) / 3
        x = x + 0.1 * torch.randn(n, 2, generator=generator)
        return x[torch.randperm(n, generator=generator)]


INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class Rows(Dataset):
    """A finite array of samples, drawn uniformly with replacement; scored by the generic metrics."""

    def __init__(self, data: Tensor, label: str, labels: Tensor | None = None, num_classes: int = 0) -> None:
        if data.dtype == torch.bool or data.is_complex() or not (data.is_floating_point() or data.dtype in INTEGER_DTYPES):
            raise ConfigError(f"{label}: holds {str(data.dtype).removeprefix('torch.')} values; expected real numbers "
                              f"(a float or integer array)")
        if data.dim() < 2 or data.shape[0] == 0:
            raise ConfigError(f"{label}: expected an array of shape (n >= 1, *data_shape); got {tuple(data.shape)}")
        if not torch.isfinite(data).all():
            bad = int((~torch.isfinite(data)).flatten(1).any(1).sum())
            raise ConfigError(f"{label}: {bad} of {data.shape[0]} samples hold NaN or inf")
        self.data = data.float()
        if data.shape[0] < 2 or bool((self.data == self.data[:1]).all()):
            raise ConfigError(f"{label}: all {data.shape[0]} samples are the same point; a distribution to learn needs "
                              f"at least 2 distinct samples")
        self.shape = tuple(self.data.shape[1:])
        self.label = label
        self.labels = labels
        self.num_classes = num_classes if labels is not None else 0

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return self.data[torch.randint(self.data.shape[0], (n,), generator=generator)]

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.labels is None:
            return super().sample_labelled(n, generator)
        rows = torch.randint(self.data.shape[0], (n,), generator=generator)
        return self.data[rows], self.labels[rows]


DIGITS_TEST_SIZE = 297  # a fixed held-out split of the 1797 images, for FD and likelihoods
DIGITS_SPLITS = ("train", "test", "all")


def digit_images(split: str) -> tuple[Tensor, Tensor]:
    """(images in [-1, 1] of shape (n, 1, 8, 8), labels) of one split of scikit-learn's bundled digits."""
    from sklearn.datasets import load_digits

    if split not in DIGITS_SPLITS:
        raise ValueError(f"split='{split}' is not one of: {', '.join(DIGITS_SPLITS)}")
    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div(16).mul(2).sub(1).unsqueeze(1)
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(0))
    index = {"train": order[DIGITS_TEST_SIZE:], "test": order[:DIGITS_TEST_SIZE], "all": order}[split]
    return images[index], torch.from_numpy(bunch.target).long()[index]


@register_dataset("digits")
class Digits(Rows):
    """scikit-learn's bundled 8x8 digits (offline), pixels 0..16 scaled to [-1, 1], shape (1, 8, 8), 10 classes.

    Scored by FD in the features of a fixed classifier shipped with flowkit (``digits_features``), against the
    held-out test split (297 images); bits/dim on its 17 levels. With ``resolution`` R (``data.resolution``, a
    multiple of 8) the images are upscaled bilinearly to R x R (shape (1, R, R), no longer quantised), and samples
    and reference are scored after averaging each R/8 x R/8 block back to 8 x 8, in the same features. With
    ``features`` (``data.features``) FD is taken in that feature network instead (``inception``: FID)."""

    bin_width = 2 / 16

    def __init__(self, split: str = "train", resolution: int | None = None, features: str | None = None) -> None:
        from flowkit.features import metric_name

        if resolution is not None and (resolution < 8 or resolution % 8):
            raise ConfigError(f"data.resolution={resolution}: digits are 8x8; expected a multiple of 8 (8, 16, 32, 64)")
        self.resolution = resolution or 8
        self.features = features or "digits"
        self.metric = metric_name(self.features)
        images, labels = digit_images(split)
        super().__init__(self._upscaled(images), f"digits[{split}]", labels, 10)
        if self.resolution != 8:
            self.bin_width = None

    def _upscaled(self, images: Tensor) -> Tensor:
        if self.resolution == 8:
            return images
        return torch.nn.functional.interpolate(images, size=self.resolution, mode="bilinear", align_corners=False)

    def reference(self, n: int, generator: torch.Generator) -> Tensor:
        """The held-out test split, whatever n."""
        return self._upscaled(digit_images("test")[0])

    def quality(self, samples: Tensor, reference: Tensor) -> float:
        from flowkit.features import fd

        return fd(samples, reference, self.features)

    def metrics(self, samples: Tensor, reference: Tensor) -> dict[str, float]:
        """The classifier's test accuracy, and the class balance of the samples (normalised entropy, 1 = uniform)."""
        from flowkit.digits_features import CLASSIFIER_ACCURACY

        counts = torch.bincount(self.classify(samples), minlength=10).double()
        p = counts / counts.sum()
        return {"classifier_accuracy": CLASSIFIER_ACCURACY,
                "class_balance": float(-(p[p > 0] * p[p > 0].log()).sum() / math.log(10))}

    def classify(self, x: Tensor) -> Tensor:
        from flowkit.digits_features import at_8x8, digits_classifier

        with torch.no_grad():
            return digits_classifier()(at_8x8(x.cpu())).argmax(1)


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
        except ValueError as exc:
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
    except ValueError as exc:
        size = path.stat().st_size
        raise ConfigError(f"{where}: not a plain numeric .npy array, or shorter than its header claims "
                          f"({size:,} bytes on disk; {' '.join(str(exc).split())})") from None
    dtype = mapped.dtype
    del mapped
    if dtype.kind not in "biufc":  # bool and complex are refused by Rows, with their own message
        raise ConfigError(f"{where}: holds {dtype} values ({'records' if dtype.names else 'not numbers'}); expected "
                          f"real numbers (a float or integer array)")


import flowkit.images  # noqa: E402,F401  (registers the image datasets folder and images, built on Rows)
