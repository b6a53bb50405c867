"""scikit-learn's bundled 8x8 digits (offline): a fixed train / test split, the dataset, and how the classifier
whose features score them (``flowkit.metrics.digits_features``, weights shipped with flowkit) was trained."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowkit.data.arrays import Rows
from flowkit.data.contract import register_dataset
from flowkit.errors import ConfigError


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
        from flowkit.metrics.features import metric_name

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
        from flowkit.metrics.features import fd

        return fd(samples, reference, self.features)

    def metrics(self, samples: Tensor, reference: Tensor) -> dict[str, float]:
        """The classifier's test accuracy, and the class balance of the samples (normalised entropy, 1 = uniform)."""
        from flowkit.metrics.digits_features import CLASSIFIER_ACCURACY

        counts = torch.bincount(self.classify(samples), minlength=10).double()
        p = counts / counts.sum()
        return {"classifier_accuracy": CLASSIFIER_ACCURACY,
                "class_balance": float(-(p[p > 0] * p[p > 0].log()).sum() / math.log(10))}

    def classify(self, x: Tensor) -> Tensor:
        from flowkit.metrics.digits_features import at_8x8, digits_classifier

        with torch.no_grad():
            return digits_classifier()(at_8x8(x.cpu())).argmax(1)


def train_digits_classifier(seed: int = 0, steps: int = 600) -> torch.nn.Module:
    """How the shipped weights of ``flowkit.metrics.digits_features`` were made (full-batch AdamW on the training split,
    inputs jittered by N(0, 0.05^2); about a second on a CPU)."""
    from flowkit.metrics.digits_features import DigitsClassifier

    generator = torch.Generator().manual_seed(seed)
    train, y_train = digit_images("train")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitsClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    with torch.enable_grad():
        for _ in range(steps):
            noisy = train + 0.05 * torch.randn(train.shape, generator=generator)  # robust to sample noise
            loss = torch.nn.functional.cross_entropy(model(noisy), y_train)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval().requires_grad_(False)
