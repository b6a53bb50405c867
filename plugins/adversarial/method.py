"""Adversarial diffusion distillation (ADD; Sauer et al. 2023) adapted to flows, on any affine path.

The student G starts from the teacher (``model.init_from``) and is read as a data predictor: its
velocity at (x_s, s) gives x1_hat = G(x_s, s), the endpoint the path implies (``AffinePath.endpoints``;
x_s + (1 - s) v on the rectified path). Student times are s in {0, 1/N, ..., (N-1)/N} (N =
``student_steps``); s = 0 is a pure source draw, so N = 1 is a one-step generator. Per sample:

    x_s = alpha(s) x1 + sigma(s) x0,   x1_hat = G(x_s, s)
    distillation:  t ~ time sampler, x_t = alpha(t) x1_hat + sigma(t) z  (z a fresh source draw),
                   L_distill = c(t) || x1_hat - sg(x1_teacher(x_t, t)) ||^2,   c(t) = alpha(t)
    model:         L = adversarial_weight * (-D(x1_hat)) + distill_weight * L_distill
    critic:        relu(1 - D(x1)) + relu(1 + D(sg x1_hat)) + gamma / 2 ||grad_x D(x1)||^2   (R1)

c(t) = alpha(t) is ADD's "exponential" weighting (their alpha_t is the data coefficient, as ours):
targets re-noised close to the source count little. || . ||^2 sums over dimensions, as in ADD (lambda =
``distill_weight`` = 2.5 there). ADD's critic runs on a frozen pretrained feature network; here, where
nothing is downloaded, it is a small network trained from scratch (``critic.py``), class-conditional by
projection when the run is. The method optimises both players itself (``training_step``: one critic
step, then one model step per batch), each with its own AdamW on the run's schedule; with
``adversarial_weight=0`` the critic is not trained and the run is distillation alone.

Sampling is flowkit's ``renoise:N``: x = G(x0, 0), then re-noise to tau = 1/N, ..., (N-1)/N and predict
again (N NFE). G is not a velocity field any more: no ODE samplers for it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowkit.conditioning import cond_of
from flowkit.errors import ConfigError
from flowkit.methods import Method, Steps
from flowkit.paths import AffinePath
from flowkit.teacher import Teacher
from flowkit.plugins.adversarial.critic import make_critic
from flowkit.plugins.adversarial.losses import hinge_critic, hinge_model, r1_penalty


def data_prediction(net: nn.Module, path: AffinePath, x: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
    """x1_hat: the data endpoint that the velocity ``net(x, t)`` implies on ``path``."""
    return path.endpoints(net(x, t, **cond), x, t, "velocity")[1]


class AdversarialDistillation(Method):
    """ADD (Sauer et al. 2023) on flows: a few-step student from its teacher, trained against a critic learnt
    from scratch and distilled to the teacher's data prediction from its own re-noised samples."""

    ode = False  # a few-step data predictor, not a velocity field
    samplers = ("renoise",)

    def __init__(self, path: AffinePath, time_sampler, data_shape: tuple[int, ...] = (), classes: int = 0,
                 teacher: Teacher | str = "", student_steps: int = 1, adversarial_weight: float = 1.0,
                 distill_weight: float = 2.5, r1_gamma: float = 0.1, critic_width: int = 256,
                 critic_depth: int = 3, critic_lr: float = 1e-4, critic_beta1: float = 0.0,
                 critic_beta2: float = 0.99) -> None:
        if student_steps < 1:
            raise ConfigError(f"method 'adversarial': student_steps={student_steps}; expected >= 1")
        if adversarial_weight < 0 or distill_weight < 0 or r1_gamma < 0 or adversarial_weight + distill_weight == 0:
            raise ConfigError(f"method 'adversarial': adversarial_weight={adversarial_weight}, distill_weight="
                              f"{distill_weight}, r1_gamma={r1_gamma}; expected all >= 0 and a positive weight")
        if critic_lr <= 0 or not (0 <= critic_beta1 < 1 and 0 <= critic_beta2 < 1):
            raise ConfigError(f"method 'adversarial': critic_lr={critic_lr}, critic_beta1={critic_beta1}, "
                              f"critic_beta2={critic_beta2}; expected lr > 0 and betas in [0, 1)")
        self.path, self.time_sampler = path, time_sampler
        self.teacher = teacher  # built by flowkit from method.teacher, read on this path (flowkit.teacher)
        self.student_steps = student_steps
        self.adversarial_weight, self.distill_weight, self.r1_gamma = adversarial_weight, distill_weight, r1_gamma
        try:
            self.critic = make_critic(tuple(data_shape), classes, critic_width, critic_depth)
        except ValueError as exc:
            raise ConfigError(f"method 'adversarial': {exc}") from None
        self.critic_optim = {"lr": critic_lr, "betas": (critic_beta1, critic_beta2), "weight_decay": 0.0}

    def generate(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        """x1_hat = G(x_s, s) from the batch's pair at student times s drawn from the student grid."""
        x0, x1 = batch["x0"], batch["x1"]
        s = torch.randint(0, self.student_steps, (x1.shape[0],), device=x1.device).to(x1.dtype) / self.student_steps
        return data_prediction(model, self.path, self.path.sample(x0, x1, s), s, **cond_of(batch))

    def distillation(self, fake: Tensor, batch: dict[str, Any]) -> Tensor:
        """c(t) || x1_hat - sg(teacher's x1 prediction from x1_hat re-noised to t) ||^2, per sample."""
        x0 = batch["x0"]
        t = self.time_sampler(x0.shape[0], x0.device).to(x0.dtype)
        with torch.no_grad():
            z = x0[torch.randperm(x0.shape[0], device=x0.device)]
            x_t = self.path.sample(z, fake, t)
            target = self.teacher.on(x0.device).predict("x1", x_t, t, **cond_of(batch))
        return self.path.alpha(t) * (fake - target).pow(2).flatten(1).sum(1)

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        fake = self.generate(model, batch)
        distill = self.distillation(fake, batch)
        if self.adversarial_weight == 0:
            return {"loss": self.distill_weight * distill, "distill": distill}
        adversarial = hinge_model(self.critic(fake, **cond_of(batch)))
        return {"loss": self.adversarial_weight * adversarial + self.distill_weight * distill,
                "distill": distill, "adversarial": adversarial}

    def critic_loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor] | None:
        """The critic's hinge loss with R1 on real data; None (no critic step) at adversarial weight 0."""
        if self.adversarial_weight == 0:
            return None
        cond = cond_of(batch)
        with torch.no_grad():
            fake = self.generate(model, batch)
        real = batch["x1"].detach().requires_grad_(self.r1_gamma > 0)
        real_logits, fake_logits = self.critic(real, **cond), self.critic(fake, **cond)
        hinge = hinge_critic(real_logits, fake_logits)
        r1 = r1_penalty(real_logits, real, self.r1_gamma) if self.r1_gamma > 0 else torch.zeros_like(hinge)
        return {"loss": hinge + r1, "hinge": hinge, "r1": r1, "real": real_logits.detach(),
                "fake": fake_logits.detach()}

    def networks(self) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
        return {"critic": (self.critic, self.critic_optim)}

    def training_step(self, steps: Steps, batch: dict[str, Any]) -> None:
        """One critic step on the current student, then one student step against the updated critic."""
        steps.step("critic", lambda: self.critic_loss(steps.model, batch))
        steps.step("model", lambda: steps.loss(steps.model, batch))
