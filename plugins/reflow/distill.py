"""One-step distillation of a (k-rectified) flow (Liu et al. 2022, §2.3 "distillation").

With t fixed at 0, the network's single Euler step should land on the teacher's ODE output:

    L(theta) = || x0 + v_theta(x0, 0) - Phi(x0) ||^2,    (x0, Phi(x0)) from the reflow coupling

so the student is sampled with one Euler step (``solver=euler:1``), NFE 1. Start the student from
the flow being distilled (``model.init_from``), as the paper does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowkit.conditioning import cond_of
from flowkit.methods import Method, per_sample_mse


class ReflowDistill(Method):
    """Regress Phi(x0) from x0 with t = 0: the paper's distill stage of k-rectified flow."""

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x0, x1 = batch["x0"], batch["x1"]
        t = torch.zeros(x0.shape[0], device=x0.device, dtype=x0.dtype)
        return {"loss": per_sample_mse(x0 + model(x0, t, **cond_of(batch)), x1)}
