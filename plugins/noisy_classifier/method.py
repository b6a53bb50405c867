"""A classifier of noisy data for classifier guidance (Dhariwal & Nichol 2021, sec. 4), on any affine path.

Trained on the points of the run's own path, x_t = alpha(t) x1 + sigma(t) x0 with x0 an independent source draw,
at times from the run's time sampler (uniform in the recipes, as the paper's classifiers are trained over
every noise level), with the class y of x1:

    L = cross-entropy(f(x_t, t), y)        (per sample; ``label_smoothing`` as in torch)

Declared ``classifier = True``: flowkit builds its network without a label input and tells a backbone that asks
for ``classes`` how many there are; the run is not sampled but reports its accuracy along the path, and
``classifier=RUN classifier_scale=s`` adds s grad_x log p(y | x_t, t) to another run's score
(``flowkit.config.guidance``). That run must share the path (the classifier is read at its noise levels).
"""

from __future__ import annotations

from typing import Any, Callable

import torch.nn.functional as F
from torch import Tensor, nn

from flowkit.errors import ConfigError
from flowkit.methods import Method
from flowkit.paths import AffinePath


class NoisyClassifier(Method):
    """A time-conditioned classifier p(y | x_t, t) trained along the run's path, for classifier guidance."""

    ode = False
    needs_labels = True
    classifier = True

    def __init__(self, path: AffinePath, time_sampler, classes: int = 0, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"method.label_smoothing={label_smoothing} is out of range; expected 0 <= value < 1")
        self.path, self.time_sampler = path, time_sampler
        self.classes, self.label_smoothing = classes, label_smoothing

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        x0, x1, y = batch["x0"], batch["x1"], batch["y"]
        t = self.time_sampler(x1.shape[0], x1.device).to(x1.dtype)
        logits = model(self.path.sample(x0, x1, t), t)
        if logits.shape != (x1.shape[0], self.classes):
            raise ConfigError(f"the classifier's network returns shape {tuple(logits.shape)}; expected "
                              f"(batch, {self.classes}) logits: use model=noisy_classifier")
        loss = F.cross_entropy(logits.float(), y, reduction="none", label_smoothing=self.label_smoothing)
        return {"loss": loss, "accuracy": (logits.argmax(1) == y).float()}

    def predictor(self, net: nn.Module) -> tuple[Callable[..., Tensor], str]:
        return net, "logits"
