"""The adversarial terms, per sample (shape (batch,)), for a critic D with real logits D(x1), fake D(G(z)).

    critic (hinge, Lim & Ye 2017):  relu(1 - D(x_real)) + relu(1 + D(x_fake))
    model  (hinge):                 -D(x_fake)
    R1 (Mescheder et al. 2018):     gamma / 2 * || d D(x_real) / d x_real ||^2
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import relu


def hinge_critic(real: Tensor, fake: Tensor) -> Tensor:
    return relu(1 - real) + relu(1 + fake)


def hinge_model(fake: Tensor) -> Tensor:
    return -fake


def r1_penalty(real_logits: Tensor, x_real: Tensor, gamma: float) -> Tensor:
    """``x_real`` must require gradients and ``real_logits`` be computed from it; the penalty is
    differentiable (create_graph) so the critic's step descends it."""
    (grad,) = torch.autograd.grad(real_logits.sum(), x_real, create_graph=True)
    return 0.5 * gamma * grad.pow(2).flatten(1).sum(1)
