"""Distribution matching distillation, DMD2 (Yin et al. 2024, "Improved Distribution Matching Distillation for
Fast Image Synthesis"; DMD: Yin et al. 2024, CVPR), on flows and any affine path.

A one-step generator G (the model, started from the teacher by ``model.init_from``; read as a data predictor,
x1_hat = G(x_s, s), the endpoint its velocity implies on the path) is trained so that its samples' distribution
matches the teacher's. Two flows are compared on G's samples re-noised to a time t: the teacher ("real") and a
*fake* flow trained online on G's samples (a copy of the model at the start, so of the teacher). Per sample:

    x1_hat = G(x_s, s),    t ~ U[t_min, t_max],   x_t = alpha(t) x1_hat + sigma(t) z     (z a fresh source draw)
    real, fake = the data predictions of the teacher and of the fake flow at (x_t, t)     (without gradients)
    g = (fake - real) / mean|x1_hat - real|                                         (DMD's normalised gradient)
    L_G = 1/2 || x1_hat - sg(x1_hat - g) ||^2      (its gradient in x1_hat is g / dims: G moves toward real)
    L_fake = || fake_v(x_t', t') - (x1_hat' - z') ||^2 (flow matching on sg(G's samples); t' from the time sampler)

The difference of the two data predictions is the difference of the two velocities scaled by the path:
fake - real = (alpha sigma' - sigma alpha')^-1 ... = -sigma(t) / (alpha'(t) sigma(t) - alpha(t) sigma'(t)) times
(v_fake - v_real) at the same (x_t, t), on the rectified path (1 - t)(v_fake - v_real): the gradient is the
score difference of DMD, and ``tests/plugins/test_dmd.py`` checks it against autograd.

DMD2's two changes to DMD are followed: no regression loss (no paired noise-image set is needed) and the two
time-scale update rule, ``fake_updates`` fake-flow steps (their 5) per generator step, here on the same batch
(only the generator's steps count as training steps). Its multi-step generator is trained by backward simulation:
for ``student_steps`` N > 1, s_k = k / N with k uniform, and x_s comes from running G's own N-step chain k steps
(predict, re-noise) without gradients, as sampling will. Not done here: DMD2's GAN term, a classifier head on the
fake network's features (flowkit's backbones declare no feature contract; the ``adversarial`` plugin is flowkit's
GAN distiller), and real-guidance (classifier-free guidance of the teacher) beyond the run's own conditioning.
Sampling is flowkit's ``renoise:N``; G is not a velocity field any more, so no ODE sampler applies.

Every re-noising (x_t for the two flows, the fake flow's pairs, backward simulation, and ``renoise:N``) draws z
from the batch's source draws, independent of G's samples by default (the paper's). ``renoise=ot`` (any coupling
that needs only the data, as the ``renoise`` sampler's ``pair``) pairs z with G's samples by minibatch OT, within
the training batch and in blocks of ``renoise_block`` rows when sampling: a teacher trained on OT pairs
(``coupling=ot``) is the flow of OT-paired interpolants, and the fake flow must be the same construction on G's
samples for fake = real to hold when G's samples are the data. With independent re-noising an OT teacher's student
missed its teacher by 4.7x on 8gaussians -> moons (bench/results/ablation_dmd2_8gaussians_moons_of_ot_cfm.md).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.conditioning import cond_of
from flowkit.errors import ConfigError
from flowkit.couplings import pair_in_blocks
from flowkit.methods import Method, Steps, per_sample_mse
from flowkit.paths import AffinePath
from flowkit.samplers import renoising
from flowkit.teacher import Teacher


def matching_gradient(x1_hat: Tensor, real: Tensor, fake: Tensor) -> Tensor:
    """DMD's gradient on the generator's samples: (fake - real) / mean|x1_hat - real| per sample (no gradients)."""
    scale = (x1_hat - real).abs().flatten(1).mean(1).clamp_min(1e-8)
    return torch.nan_to_num((fake - real) / scale.view(-1, *[1] * (x1_hat.dim() - 1)))


class DMD2(Method):
    """DMD2 (Yin et al. 2024) on flows: a generator against the teacher and a fake flow of its own samples."""

    ode = False  # a few-step data predictor, not a velocity field
    samplers = ("renoise",)

    def __init__(self, path: AffinePath, time_sampler, teacher: Teacher | str = "", student_steps: int = 1,
                 fake_updates: int = 5, t_min: float = 0.02, t_max: float = 0.98, fake_lr: float = 1e-4,
                 fake_beta1: float = 0.0, fake_beta2: float = 0.99, renoise: str = "independent",
                 renoise_block: int = 256) -> None:
        if student_steps < 1 or fake_updates < 1:
            raise ConfigError(f"method 'dmd2': student_steps={student_steps}, fake_updates={fake_updates}; "
                              "expected both >= 1")
        if not 0.0 <= t_min < t_max <= 1.0:
            raise ConfigError(f"method 'dmd2': t_min={t_min}, t_max={t_max}; expected 0 <= t_min < t_max <= 1")
        if fake_lr <= 0 or not (0 <= fake_beta1 < 1 and 0 <= fake_beta2 < 1):
            raise ConfigError(f"method 'dmd2': fake_lr={fake_lr}, fake_beta1={fake_beta1}, fake_beta2={fake_beta2}; "
                              "expected lr > 0 and betas in [0, 1)")
        self.renoise = renoising("method 'dmd2'", renoise, renoise_block)  # every re-noising's pairs (docstring)
        self.path, self.time_sampler, self.teacher = path, time_sampler, teacher
        self.student_steps, self.fake_updates, self.t_min, self.t_max = student_steps, fake_updates, t_min, t_max
        self.fake_optim = {"lr": fake_lr, "betas": (fake_beta1, fake_beta2), "weight_decay": 0.0}
        self.fake: nn.Module | None = None

    def networks(self, model: nn.Module) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
        """The fake flow: a copy of the model as it starts (the teacher's weights, through model.init_from)."""
        self.fake = copy.deepcopy(model).train().requires_grad_(True)
        return {"fake": (self.fake, self.fake_optim)}

    def data_of(self, net: nn.Module, x: Tensor, t: Tensor, cond: dict[str, Tensor]) -> Tensor:
        """The data endpoint that the velocity ``net(x, t)`` implies on the path."""
        return self.path.endpoints(net(x, t, **cond), x, t, "velocity")[1]

    def generate(self, model: nn.Module, batch: dict[str, Any]) -> Tensor:
        """x1_hat = G(x_s, s): s = k / N with k uniform; x_s from G's own chain of k steps (backward simulation)."""
        x0, cond = batch["x0"], cond_of(batch)
        n, steps = x0.shape[0], self.student_steps
        x, s = x0, torch.zeros(n, device=x0.device, dtype=x0.dtype)
        if steps > 1:
            k = torch.randint(0, steps, (n,), device=x0.device)
            with torch.no_grad():
                for j in range(1, steps):
                    _, ahead = self.noised(self.data_of(model, x, s, cond), x0, torch.full_like(s, j / steps))
                    moving = (k >= j).view(-1, *[1] * (x0.dim() - 1))
                    x = torch.where(moving, ahead, x)
                    s = torch.where(k >= j, torch.full_like(s, j / steps), s)
        return self.data_of(model, x, s, cond)

    def noised(self, x1: Tensor, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(z, x_t): z a fresh order of the source draws ``x0``, paired with ``x1`` as ``renoise`` says."""
        z = x0[torch.randperm(x0.shape[0], device=x0.device)]
        if self.renoise.coupling is not None:
            z = pair_in_blocks(self.renoise.coupling, x1, z, x1.shape[0])
        return z, self.path.sample(z, x1, t)

    def sampler_options(self, sampler: str) -> dict[str, Any]:
        return self.renoise.options if sampler == "renoise" else {}

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        x0, cond = batch["x0"], cond_of(batch)
        x1_hat = self.generate(model, batch)
        t = self.t_min + (self.t_max - self.t_min) * torch.rand(x0.shape[0], device=x0.device, dtype=x0.dtype)
        with torch.no_grad():
            _, x_t = self.noised(x1_hat, x0, t)
            real = self.teacher.on(x0.device).predict("x1", x_t, t, **cond)
            fake = self.data_of(self.fake, x_t, t, cond)
            g = matching_gradient(x1_hat, real, fake)
        return {"loss": 0.5 * per_sample_mse(x1_hat, x1_hat.detach() - g), "gradient_norm": g.flatten(1).norm(dim=1)}

    def fake_loss(self, model: nn.Module, fake: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Flow matching of the fake flow on the generator's current samples (no gradient to the generator)."""
        x0, cond = batch["x0"], cond_of(batch)
        with torch.no_grad():
            x1_hat = self.generate(model, batch)
        t = self.time_sampler(x0.shape[0], x0.device).to(x0.dtype)
        z, x_t = self.noised(x1_hat, x0, t)
        return {"loss": per_sample_mse(fake(x_t, t, **cond), self.path.target(z, x1_hat, t))}

    def training_step(self, steps: Steps, batch: dict[str, Any]) -> None:
        """``fake_updates`` steps of the fake flow on the current generator, then one generator step."""
        fake = steps.networks["fake"]
        for _ in range(self.fake_updates):
            steps.step("fake", lambda: self.fake_loss(steps.model, fake, batch))
        steps.step("model", lambda: steps.loss(steps.model, batch))
