"""Classifier guidance (Dhariwal & Nichol 2021): a classifier of noisy data steers a model's sampling.

A time-conditioned classifier p(y | x_t, t), trained on x_t = alpha(t) x1 + sigma(t) x0 of the same path as
the model, adds the gradient of its log-probability to the model's score:

    score_s(x, t | y) = score(x, t) + s grad_x log p(y | x, t)

(the score of p_t(x) p_t(y | x)^s). Every prediction is affine in the score (``AffinePath.score_gain``), so
the sampler reads the model's prediction plus ``score_gain * s * grad``: every sampler, on every path, with
an unconditional or a class-conditional model (then on top of its classifier-free guidance).

A classifier is a run whose method declares ``classifier = True``: its network maps (x_t, t) to logits over
the run's classes, shape (batch, classes), and never sees the labels. ``classifier=RUN classifier_scale=s``
(``sample``, ``eval``, ``compare``; ``Flow.sample(classifier=..., classifier_scale=...)``) loads one here.
NFE counts the model's calls; each also costs one forward and backward pass of the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowkit.errors import ConfigError
from flowkit.paths import AffinePath


@dataclass
class Classifier:
    """A trained classifier of noisy data and its guidance scale ``scale`` (s above)."""

    net: Any  # (x_t, t) -> logits (batch, classes): the classifier method's predictor
    classes: int
    scale: float = 1.0

    def logits(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(x, t.expand(x.shape[0]) if t.dim() == 0 else t)

    def gradient(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """grad_x log p(y | x, t) for each sample's label, by autograd (also inside ``torch.no_grad``)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            logits = self.logits(x, t)
            log_p = F.log_softmax(logits if logits.dtype == torch.float64 else logits.float(), dim=-1)
            chosen = log_p.gather(1, labels.to(x.device).long().view(-1, 1)).sum()
            return torch.autograd.grad(chosen, x)[0].to(x.dtype)

    def shift(self, x: Tensor, t: Tensor, labels: Tensor) -> Tensor:
        """The change of the score: s grad_x log p(y | x, t)."""
        return self.scale * self.gradient(x, t, labels)


def load_classifier(run: str | Path, scale: float, path: AffinePath, data_shape: tuple[int, ...],
                    device: torch.device | str = "cpu") -> Classifier:
    """The classifier of run ``run`` (a run directory or a .ckpt), checked against the model it will guide:
    trained by a classifier method, on the same path (alpha and sigma) and data shape."""
    from flowkit.config.build import load_run
    from flowkit.runtime.checkpoint import resolve_checkpoint
    from flowkit.methods import METHODS

    if not 0 <= scale < float("inf"):  # NaN fails it too
        raise ConfigError(f"classifier_scale={scale} is out of range; expected a finite scale >= 0")
    _, parts = load_run(resolve_checkpoint(run))
    if not getattr(parts.method, "classifier", False):
        valid = [name for name, method in METHODS.items() if getattr(method, "classifier", False)]
        raise ConfigError(f"classifier={run}: its method '{parts.method_name}' does not train a classifier; "
                          f"train one with method={' or method='.join(valid) or '(none registered)'}")
    if repr(parts.path) != repr(path):
        raise ConfigError(f"classifier={run} was trained on the path {parts.path!r}, the model samples {path!r}: "
                          f"its p(y | x_t, t) would be read at other noise levels; train it on the model's path")
    if tuple(parts.target.shape) != tuple(data_shape):
        raise ConfigError(f"classifier={run} classifies data of shape {tuple(parts.target.shape)}; the model's "
                          f"data have shape {tuple(data_shape)}")
    parts.model.to(device)
    fn, _ = parts.method.predictor(parts.model)
    return Classifier(fn, parts.classes, float(scale))


@torch.no_grad()
def classifier_accuracy(net: nn.Module | Any, path: AffinePath, source: Any, target: Any, n: int,
                        generator: torch.Generator, device: torch.device,
                        times: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)) -> dict[str, float]:
    """A classifier's accuracy on fresh labelled draws x_t = alpha x1 + sigma x0 at each time (what a classifier
    run reports instead of sample quality): ``{"acc@t=0.5": ..., ...}``; chance is 1 / classes."""
    x1, y = target.sample_labelled(n, generator)
    x0 = source.sample(n, generator)
    x0, x1, y = x0.to(device), x1.to(device), y.to(device)
    table = {}
    for time in times:
        t = torch.full((n,), time, device=device)
        predicted = net(path.sample(x0, x1, t), t).argmax(-1)
        table[f"acc@t={time:g}"] = float((predicted == y).float().mean())
    return table
