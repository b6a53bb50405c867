"""Continuous-time consistency models, sCM (Lu & Song 2024, "Simplifying, Stabilizing and Scaling Continuous-Time
Consistency Models"): sCT (training, no teacher) and sCD (distillation), on any affine path in our convention.

The consistency function is the discrete models' (``method.py``): f(x_t, t) = x_t + (1 - t) F(x_t, t), f(x, 1) = x.
Discrete consistency training compares f at t and one grid step dt further along the same pair; as dt -> 0 the
gradient of its l2 loss, divided by dt, tends to (Song et al. 2023, Thm. 6; Lu & Song eq. 3)

    -2/D (1 - t) grad_theta F . df/dt,    df/dt = v - F + (1 - t) dF/dt,    dF/dt = d_x F v + d_t F

(D the data dimensions, the total derivative along dx_t/dt = v). sCM trains on that limit directly: with
g = (1 - t) df/dt computed without gradients (one forward-mode pass, the tangent (v, 1) on (x, t)), the loss

    L = || F_theta(x_t, t) - sg(F_theta(x_t, t) + g) ||^2 / D

has exactly that gradient (``tests/plugins/test_scm.py`` checks it against the discrete loss at small dt). The
tangent v is the conditional velocity of the pair, v = path.target(x0, x1, t) (sCT), or the teacher's velocity at
(x_t, t) (sCD). sCM's three stabilisers, in our coordinates:

    tangent warm-up     g = (1 - t) (v - F + r (1 - t) dF/dt), r = min(1, step / ``tangent_warmup``): training
                        starts as flow matching (r = 0: the target is F + (1 - t)^2 (v - F)) and anneals to the
                        consistency limit (their 10k iterations)
    tangent norm        g <- g / (||g|| + c), c = ``tangent_c`` (their 0.1); ``normalise=false`` leaves g as is
    adaptive weight     a learned log-weight lambda(t) (a linear map of Fourier features of t, zero at the start):
                        L = exp(lambda(t)) ||F - sg(F + g)||^2 / D for the network, and
                        exp(lambda(t)) sg(m) - lambda(t) for lambda, m that per-sample error, minimised at
                        exp(lambda(t)) = 1 / E[m | t] (their e^{w_phi(t)} / D ||.||^2 - w_phi(t));
                        ``weighting=none`` keeps weight 1

The target network is the online one under stop-gradient (theta- = theta, sCM's choice, as iCT's). Not taken from
the paper: TrigFlow, its path (x_t = cos(t) x0 + sin(t) z) and parameterisation: the method runs on flowkit's paths
and F is the network as the discrete models read it; sCM's proposal distribution, ln(sigma) ~ N(-1.0, 1.4^2) in EDM
units, is logit(t) ~ N(1.0, 1.4^2) on the rectified path with a unit-variance source (recipes/sct.yaml). The time
embedding is differentiated (dF/dt), so the recipes use ``model.time_scale=1`` as MeanFlow's do (sCM changes
its time embedding for the same reason). Sampling is flowkit's ``renoise:N`` on f, as for the discrete models.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from flowkit.conditioning import cond_of
from flowkit.errors import ConfigError
from flowkit.methods import Method, Steps, per_sample_mse
from flowkit.models.attention import jvp_safe_attention
from flowkit.paths import AffinePath, expand_like
from flowkit.samplers import renoising
from flowkit.teacher import Teacher
from flowkit.plugins.consistency.method import consistency_function

WEIGHTINGS = ("adaptive", "none")


class LogWeight(nn.Module):
    """lambda(t): a linear map of the Fourier features cos(pi k t), sin(pi k t), k = 1..``frequencies``, and a bias;
    zero-initialised, so every weight starts at 1."""

    def __init__(self, frequencies: int = 16) -> None:
        super().__init__()
        self.register_buffer("k", math.pi * torch.arange(1, frequencies + 1, dtype=torch.float32))
        self.linear = nn.Linear(2 * frequencies, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, t: Tensor) -> Tensor:
        angles = t[:, None].to(self.k.dtype) * self.k
        return self.linear(torch.cat([angles.cos(), angles.sin()], dim=1)).squeeze(1).to(t.dtype)


class _ContinuousConsistency(Method):
    """What sCT and sCD share: the consistency gradient, its stabilisers, the weighting and how it samples."""

    ode = False  # a consistency function, not a velocity field (as the discrete models)
    samplers = ("renoise",)
    _name = ""

    def __init__(self, path: AffinePath, time_sampler, tangent_warmup: int, tangent_c: float, normalise: bool,
                 weighting: str, weight_lr: float, renoise: str, renoise_block: int) -> None:
        name = self._name
        if weighting not in WEIGHTINGS:
            raise ConfigError(f"method '{name}': weighting='{weighting}' is not one of: {', '.join(WEIGHTINGS)}")
        if tangent_warmup < 0 or tangent_c <= 0 or weight_lr <= 0:
            raise ConfigError(f"method '{name}': tangent_warmup={tangent_warmup}, tangent_c={tangent_c}, "
                              f"weight_lr={weight_lr}; expected tangent_warmup >= 0, tangent_c > 0 and weight_lr > 0")
        self.renoise = renoising(f"method '{name}'", renoise, renoise_block)  # how renoise:N pairs fresh noise
        self.path, self.time_sampler = path, time_sampler
        self.tangent_warmup, self.tangent_c, self.normalise = tangent_warmup, tangent_c, normalise
        self.weighting, self.weight_lr = weighting, weight_lr
        self.weight: LogWeight | None = None

    def networks(self) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
        """The adaptive weighting's lambda(t), when ``weighting=adaptive``."""
        if self.weighting != "adaptive":
            return {}
        self.weight = LogWeight()
        return {"weight": (self.weight, {"lr": self.weight_lr, "betas": (0.9, 0.999), "weight_decay": 0.0})}

    def warmup(self, step: int) -> float:
        """r: the share of the (1 - t) dF/dt term in the tangent at this training step."""
        return 1.0 if self.tangent_warmup == 0 else min(1.0, step / self.tangent_warmup)

    def consistency_gradient(self, model: nn.Module, x: Tensor, t: Tensor, v: Tensor, r: float,
                             **cond: Tensor) -> tuple[Tensor, Tensor]:
        """(F(x, t) with its graph, g = (1 - t)(v - F + r (1 - t) dF/dt) without one, normalised unless told not)."""
        with jvp_safe_attention():  # fused attention kernels have no forward-mode derivative
            out, d_out = torch.func.jvp(lambda x_, t_: model(x_, t_, **cond), (x, t), (v, torch.ones_like(t)))
        s = expand_like(1 - t, x)
        g = (s * (v - out + r * s * d_out)).detach()
        if self.normalise:
            g = g / expand_like(g.flatten(1).norm(dim=1) + self.tangent_c, g)
        return out, g

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        x0, x1, cond = batch["x0"], batch["x1"], cond_of(batch)
        t = self.time_sampler(x1.shape[0], x1.device).to(x1.dtype)
        x_t = self.path.sample(x0, x1, t)
        with torch.no_grad():
            v = self.tangent(x0, x1, x_t, t, **cond)
        out, g = self.consistency_gradient(model, x_t, t, v, self.warmup(int(batch.get("step", 0))), **cond)
        error = per_sample_mse(out, (out + g).detach())
        terms = {"mse": error.detach(), "t": t}
        if self.weight is None:
            return {"loss": error, **terms}
        with torch.no_grad():
            log_weight = self.weight(t)
        return {"loss": log_weight.exp() * error, "log_weight": log_weight, **terms}

    def weight_loss(self, t: Tensor, error: Tensor) -> dict[str, Tensor]:
        """exp(lambda(t)) sg(m) - lambda(t): minimised at exp(lambda(t)) = 1 / E[m | t]."""
        log_weight = self.weight(t)
        return {"loss": log_weight.exp() * error - log_weight}

    def training_step(self, steps: Steps, batch: dict[str, Any]) -> None:
        """The network's step, then lambda's on the per-sample errors and times of that same step."""
        seen: dict[str, Tensor] = {}

        def network_terms() -> dict[str, Tensor]:
            terms = steps.loss(steps.model, batch)
            seen.update(t=terms["t"].detach(), mse=terms["mse"])
            return terms

        steps.step("model", network_terms)
        if seen:
            steps.step("weight", lambda: self.weight_loss(seen["t"], seen["mse"]))

    def predictor(self, net: nn.Module) -> tuple[Callable[..., Tensor], str]:
        """The consistency function f, a data (x1) prediction."""
        return (lambda x, t, **inputs: consistency_function(net, x, t, **inputs)), "x1"

    def sampler_options(self, sampler: str) -> dict[str, Any]:
        return self.renoise.options if sampler == "renoise" else {}


class ContinuousConsistencyTraining(_ContinuousConsistency):
    """sCT (Lu & Song 2024): no teacher; the tangent is the pair's conditional velocity."""

    _name = "sct"

    def __init__(self, path: AffinePath, time_sampler, tangent_warmup: int = 1000, tangent_c: float = 0.1,
                 normalise: bool = True, weighting: str = "adaptive", weight_lr: float = 1e-3,
                 renoise: str = "independent", renoise_block: int = 256) -> None:
        super().__init__(path, time_sampler, tangent_warmup, tangent_c, normalise, weighting, weight_lr, renoise,
                         renoise_block)

    def tangent(self, x0: Tensor, x1: Tensor, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        return self.path.target(x0, x1, t)


class ContinuousConsistencyDistillation(_ContinuousConsistency):
    """sCD (Lu & Song 2024): the tangent is a frozen teacher flow's velocity at (x_t, t)."""

    _name = "scd"

    def __init__(self, path: AffinePath, time_sampler, teacher: Teacher | str = "", tangent_warmup: int = 1000,
                 tangent_c: float = 0.1, normalise: bool = True, weighting: str = "adaptive",
                 weight_lr: float = 1e-3, renoise: str = "independent", renoise_block: int = 256) -> None:
        self.teacher = teacher  # built by flowkit from method.teacher (flowkit.teacher)
        super().__init__(path, time_sampler, tangent_warmup, tangent_c, normalise, weighting, weight_lr, renoise,
                         renoise_block)

    def tangent(self, x0: Tensor, x1: Tensor, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        return self.teacher.on(x_t.device)(x_t, t, **cond)
