"""Sample-quality metrics (BENCHMARKS.md)."""

from __future__ import annotations

import ot
import torch
from torch import Tensor


def w2(x: Tensor, y: Tensor, num_iter_max: int = 10_000_000) -> float:
    """Exact 2-Wasserstein distance between two empirical measures (POT ``emd2``, squared Euclidean cost).

    POT's default iteration cap returns non-optimal plans from about 2,000 points, hence the larger cap.
    """
    x = x.detach().flatten(1).to("cpu", torch.float64)
    y = y.detach().flatten(1).to("cpu", torch.float64)
    cost = torch.cdist(x, y) ** 2
    a = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64)
    b = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=torch.float64)
    return float(ot.emd2(a, b, cost, numItermax=num_iter_max)) ** 0.5
