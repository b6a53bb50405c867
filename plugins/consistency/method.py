"""Consistency models (Song et al. 2023) on any affine path, in our time convention (t=0 noise, t=1 data).

The network F is wrapped as the consistency function

    f(x_t, t) = c_skip(t) x_t + c_out(t) F(x_t, t),   c_skip = 1,  c_out = 1 - t,

so f(x, 1) = x holds exactly for any network (the boundary sits at the data end; Consistency-FM, Yang
et al. 2024, uses the same form), and a velocity network on the rectified path starts as its own
one-step Euler jump to t=1. With the grid t_0 = 0 < ... < t_{N-1} = 1 of the schedule N(k)
(``schedule.py``), i from the time sampler, x_t = alpha(t) x1 + sigma(t) x0:

    L = d( f_theta(x_{t_i}, t_i),  sg f_theta-(x^_{t_{i+1}}, t_{i+1}) ),   theta- <- mu(k) theta- + (1 - mu(k)) theta

    CD: x^_{t_{i+1}} = one teacher solver step (Euler or Heun) from (x_{t_i}, t_i)
    CT: x^_{t_{i+1}} = alpha(t_{i+1}) x1 + sigma(t_{i+1}) x0, the same pair one grid step on

    d = l2:            mean over dimensions of (a - b)^2                     (our per-sample convention)
    d = pseudo_huber:  sqrt(||a - b||^2 + c^2) - c,  c = 0.00054 sqrt(dim)  (iCT, Song & Dhariwal 2023),
                       or ``huber_c``: iCT's c is for images in [-1, 1]; other data scales want their own

Sampling (Song et al. 2023, Alg. 1) is flowkit's ``renoise:N`` sampler on f as a data prediction: x = f(x0, 0);
then for tau = 1/N, ..., (N-1)/N re-noise x_tau = alpha(tau) x + sigma(tau) z (z a fresh source draw) and
x = f(x_tau, tau): N NFE. A consistency network defines no ODE, so ODE samplers are refused. ``renoise=ot``
pairs z with the current samples by minibatch OT in blocks of ``renoise_block`` rows: CT on OT pairs
(``coupling=ot``) has only seen interpolants of OT-coupled pairs, and with independent z its 2-step samples
were worse than its 1-step ones (8gaussians -> moons W2 1.38 vs 0.27); coupled, 2 and 4 steps improve on 1
(recipes/ct_ot.yaml).

The target network theta- is made in ``setup`` (a copy of the network, once it is on its device) and
updated in ``after_step``, after every optimiser step; the loss only reads it.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from flowkit.conditioning import cond_of
from flowkit.errors import ConfigError
from flowkit.methods import Method, per_sample_mse
from flowkit.paths import AffinePath, expand_like
from flowkit.samplers import renoising
from flowkit.teacher import Teacher
from flowkit.plugins.consistency.schedule import SCHEDULES, discretisation, target_decay

DISTANCES = ("pseudo_huber", "l2")
TEACHER_SOLVERS = ("heun", "euler")


def consistency_function(model: nn.Module, x: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
    """f(x, t) = x + (1 - t) F(x, t): equal to x at t = 1 whatever F returns."""
    return x + expand_like(1 - t, x) * model(x, t, **cond)


def teacher_step(velocity: nn.Module, x: Tensor, t: Tensor, t_next: Tensor, solver: str, **cond: Tensor) -> Tensor:
    """One Euler or Heun step of dx/dt = v(x, t) from t to t_next (per-sample times)."""
    dt = expand_like(t_next - t, x)
    v = velocity(x, t, **cond)
    x_euler = x + dt * v
    if solver == "euler":
        return x_euler
    return x + dt * 0.5 * (v + velocity(x_euler, t_next, **cond))


class _Consistency(Method):
    """What CD and CT share: the grid, the distance, the target network and how it samples."""

    ode = False  # solvers and likelihoods need a velocity; a consistency network is not one
    samplers = ("renoise",)
    _name = ""

    def __init__(self, path: AffinePath, time_sampler, total_steps: int, schedule: str, s0: int, s1: int,
                 mu0: float, distance: str, huber_c: float = 0.0, renoise: str = "independent",
                 renoise_block: int = 256) -> None:
        name = self._name
        if schedule not in SCHEDULES:
            raise ConfigError(f"method '{name}': schedule='{schedule}' is not one of: {', '.join(SCHEDULES)}")
        if distance not in DISTANCES:
            raise ConfigError(f"method '{name}': distance='{distance}' is not one of: {', '.join(DISTANCES)}")
        self.renoise = renoising(f"method '{name}'", renoise, renoise_block)  # how renoise:N pairs fresh noise
        if not 1 <= s0 <= s1 or not 0.0 <= mu0 < 1.0 or huber_c < 0:
            raise ConfigError(f"method '{name}': s0={s0}, s1={s1}, mu0={mu0}, huber_c={huber_c}; expected "
                              "1 <= s0 <= s1, 0 <= mu0 < 1 and huber_c >= 0")
        self.path, self.time_sampler, self.total_steps = path, time_sampler, total_steps
        self.schedule, self.s0, self.s1, self.mu0 = schedule, s0, s1, mu0
        self.distance, self.huber_c = distance, huber_c
        self._target: nn.Module | None = None
        self._pending: dict[str, Tensor] | None = None

    def grid_points(self, step: int) -> int:
        return discretisation(self.schedule, step, self.total_steps, self.s0, self.s1)

    def neighbours(self, x1: Tensor, step: int) -> tuple[Tensor, Tensor]:
        """(t_i, t_{i+1}) per sample: i from the time sampler's draw on the grid of N(step) points."""
        n = self.grid_points(step)
        u = self.time_sampler(x1.shape[0], x1.device).to(x1.dtype)
        i = torch.clamp(torch.floor(u * (n - 1)), max=n - 2)
        return i / (n - 1), (i + 1) / (n - 1)

    def d(self, a: Tensor, b: Tensor) -> Tensor:
        if self.distance == "l2":
            return per_sample_mse(a, b)
        c = self.huber_c or 0.00054 * math.sqrt(a[0].numel())
        return torch.sqrt((a - b).pow(2).flatten(1).sum(1) + c * c) - c

    def setup(self, model: nn.Module) -> None:
        """theta-: the online network itself when mu0 = 0 (iCT), else an EMA copy made here (restored from a
        checkpoint when the run resumes)."""
        if self.mu0 > 0 and self._target is None:
            self._target = copy.deepcopy(model).requires_grad_(False)
            if self._pending is not None:
                self._target.load_state_dict(self._pending)
                self._pending = None

    def target_network(self, model: nn.Module) -> nn.Module:
        if self.mu0 == 0:
            return model
        if self._target is None:
            raise RuntimeError(f"method '{self._name}': setup(model) makes the target network before the first loss")
        return self._target

    def after_step(self, model: nn.Module, step: int) -> None:
        """theta- <- mu(k) theta- + (1 - mu(k)) theta, after optimiser step k - 1, with k = ``step`` the next step:
        a checkpoint written between two steps holds the pair (theta, theta-) a resumed run continues from."""
        if self._target is None:
            return
        mu = target_decay(self.schedule, self.mu0, self.s0, self.grid_points(step))
        with torch.no_grad():
            torch._foreach_lerp_(list(self._target.parameters()), list(model.parameters()), 1 - mu)

    def state_dict(self) -> dict[str, Any]:
        return {"target": self._target.state_dict()} if self._target is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        target = state.get("target")
        if target is not None and self._target is not None:
            self._target.load_state_dict(target)
        else:
            self._pending = target

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
        x0, x1 = batch["x0"], batch["x1"]
        step = int(batch.get("step", 0))
        target_net = self.target_network(model)
        t, t_next = self.neighbours(x1, step)
        x_t = self.path.sample(x0, x1, t)
        cond = cond_of(batch)
        with torch.no_grad():
            neighbour = self.neighbour(x0, x1, x_t, t, t_next, **cond)
            target = consistency_function(target_net, neighbour, t_next, **cond)
        return {"loss": self.d(consistency_function(model, x_t, t, **cond), target)}

    def predictor(self, net: nn.Module) -> tuple[Callable[..., Tensor], str]:
        """The consistency function f, a data (x1) prediction."""
        return (lambda x, t, **inputs: consistency_function(net, x, t, **inputs)), "x1"

    def sampler_options(self, sampler: str) -> dict[str, Any]:
        return self.renoise.options if sampler == "renoise" else {}


class ConsistencyTraining(_Consistency):
    """CT (Song et al. 2023, Alg. 3; iCT defaults of Song & Dhariwal 2023): no teacher; the neighbour is
    the same (x0, x1) pair one grid step further along the path."""

    _name = "ct"

    def __init__(self, path: AffinePath, time_sampler, total_steps: int, schedule: str = "ict", s0: int = 10,
                 s1: int = 1280, mu0: float = 0.0, distance: str = "pseudo_huber", huber_c: float = 0.0,
                 renoise: str = "independent", renoise_block: int = 256) -> None:
        super().__init__(path, time_sampler, total_steps, schedule, s0, s1, mu0, distance, huber_c, renoise,
                         renoise_block)

    def neighbour(self, x0: Tensor, x1: Tensor, x_t: Tensor, t: Tensor, t_next: Tensor, **cond: Tensor) -> Tensor:
        return self.path.sample(x0, x1, t_next)


class ConsistencyDistillation(_Consistency):
    """CD (Song et al. 2023, Alg. 2): the neighbour is one solver step of a frozen teacher flow."""

    _name = "cd"

    def __init__(self, path: AffinePath, time_sampler, total_steps: int, teacher: Teacher | str = "",
                 teacher_solver: str = "heun", schedule: str = "constant", s0: int = 2, s1: int = 32,
                 mu0: float = 0.0, distance: str = "l2", huber_c: float = 0.0,
                 renoise: str = "independent", renoise_block: int = 256) -> None:
        self.teacher = teacher  # built by flowkit from method.teacher (flowkit.teacher)
        if teacher_solver not in TEACHER_SOLVERS:
            raise ConfigError(f"method 'cd': teacher_solver='{teacher_solver}' is not one of: "
                              f"{', '.join(TEACHER_SOLVERS)}")
        self.teacher_solver = teacher_solver
        super().__init__(path, time_sampler, total_steps, schedule, s0, s1, mu0, distance, huber_c, renoise,
                         renoise_block)

    def neighbour(self, x0: Tensor, x1: Tensor, x_t: Tensor, t: Tensor, t_next: Tensor, **cond: Tensor) -> Tensor:
        return teacher_step(self.teacher.on(x_t.device), x_t, t, t_next, self.teacher_solver, **cond)
