"""The fixed feature network behind digits FD (BENCHMARKS.md): a small classifier trained on the
digits training split with a fixed seed; FD is computed in its penultimate features."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor, nn

from flowkit.data import digits


class DigitsClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.SiLU(), nn.Linear(256, 64), nn.SiLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@lru_cache(maxsize=1)
def digits_classifier(seed: int = 0, steps: int = 600) -> tuple[DigitsClassifier, float]:
    """(classifier, accuracy on the held-out split). Full-batch AdamW, about a second on a CPU."""
    generator = torch.Generator().manual_seed(seed)
    train_set, test_set = digits("train"), digits("test")
    train, test, y_train, y_test = train_set.data, test_set.data, train_set.labels, test_set.labels
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = DigitsClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    with torch.enable_grad():  # callers may hold no_grad; the (cached) training needs gradients
        for _ in range(steps):
            noisy = train + 0.05 * torch.randn(train.shape, generator=generator)  # robust to sample noise
            loss = nn.functional.cross_entropy(model(noisy), y_train)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval().requires_grad_(False)
    accuracy = float((model(test).argmax(1) == y_test).float().mean())
    return model, accuracy
