"""The fixed feature network behind digits FD (README, Benchmarks): a small classifier of the 8x8 digits whose
trained weights ship with flowkit (``assets/digits_classifier.pt``), so FD is one number on every machine,
torch and BLAS build. FD is computed in its penultimate features.

The weights were made by ``flowkit.data.digits.train_digits_classifier()`` (seed 0, 600 full-batch AdamW steps on the training
split, inputs jittered by N(0, 0.05^2)); retraining reproduces them only up to floating-point differences.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import torch
from torch import Tensor, nn

WEIGHTS = "digits_classifier.pt"


class DigitsClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.SiLU(), nn.Linear(256, 64), nn.SiLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _shipped() -> dict:
    with resources.files("flowkit.assets").joinpath(WEIGHTS).open("rb") as f:
        return torch.load(f, map_location="cpu", weights_only=True)


@lru_cache(maxsize=1)
def digits_classifier() -> DigitsClassifier:
    """The shipped classifier, frozen, in eval mode."""
    model = DigitsClassifier()
    model.load_state_dict(_shipped()["state_dict"])
    return model.eval().requires_grad_(False)


def at_8x8(x: Tensor) -> Tensor:
    """Grey digits at 8 x 8 or a multiple of it (``data.resolution``), clamped to [-1, 1] and averaged back to
    8 x 8 by blocks: the classifier's input."""
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[-1] % 8 or x.shape[-2] % 8:
        raise ValueError(f"the digits classifier takes grey images (N, 1, 8k, 8k); got shape {tuple(x.shape)}")
    x = x.detach().float().clamp(-1, 1)
    return x if x.shape[-1] == 8 else nn.functional.adaptive_avg_pool2d(x, 8)


CLASSIFIER_ACCURACY = 0.9596  # its accuracy on the held-out test split (297 images); a test checks it
