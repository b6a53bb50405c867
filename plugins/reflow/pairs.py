"""Reflow pairs: (x0, Phi(x0)) with Phi the teacher's ODE map, generated in batches and cacheable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from flowkit.runtime.checkpoint import write_atomically
from flowkit.errors import ConfigError


@torch.no_grad()
def generate_pairs(sample: Callable[..., Tensor], x0: Tensor, batch_size: int, device: torch.device,
                   labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Push ``x0`` through ``sample`` (the teacher's sampler) batch by batch on ``device``; with ``labels``,
    ``sample(chunk, labels_chunk)`` maps each row conditioned on its label."""
    outputs = []
    for i, chunk in enumerate(x0.split(batch_size)):
        extra = () if labels is None else (labels[i * batch_size:(i + 1) * batch_size],)
        outputs.append(sample(chunk.to(device), *extra))
    x1 = torch.cat(outputs)
    if not torch.isfinite(x1).all():
        raise ConfigError("the teacher produced non-finite samples; reflow pairs were not written")
    return x0.to(device), x1


def save_pairs(path: Path, x0: Tensor, x1: Tensor, y: Tensor | None, meta: dict[str, Any]) -> None:
    """Atomic (temporary file + rename), so a cache is either whole or absent."""
    data = {"x0": x0.cpu(), "x1": x1.cpu(), "meta": meta, **({} if y is None else {"y": y.cpu()})}
    write_atomically(path, lambda p: torch.save(data, p))


def load_pairs(path: Path, meta: dict[str, Any]) -> tuple[Tensor, Tensor, Tensor | None] | None:
    """The cached pairs if ``path`` holds pairs made with the same teacher and settings, else None."""
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise ConfigError(f"reflow cache '{path}' cannot be read safely; delete it to regenerate") from None
    if cached.get("meta") != meta:
        raise ConfigError(f"reflow cache '{path}' was made with other settings {cached.get('meta')}; "
                          f"expected {meta}. Delete it or point coupling.cache elsewhere")
    return cached["x0"], cached["x1"], cached.get("y")
