"""Shortcut models (Frans, Hafner, Levine, Abbeel 2024, "One Step Diffusion via Shortcut Models") on any path.

One network s(x_t, t, d) is conditioned on the step size d it will be used with: s(x_t, t, d) is the average
velocity of the flow over [t, t + d], so one jump x_{t+d} = x_t + d s(x_t, t, d) follows the flow. Our convention
is the paper's (t = 0 noise, t = 1 data). Training, per batch (paper, Sec. 3 and eq. 5; a fraction
``consistency`` of the batch, the paper's 1/4, is self-consistency, the rest flow matching):

    flow matching:     t ~ time sampler,  L = || s(x_t, t, 0) - v(x0, x1, t) ||^2      (the conditional velocity)
    self-consistency:  D = 2^-k, k uniform in {0, ..., levels - 1}   (the taught step: 1, 1/2, ..., 2^-(levels-1))
                       t uniform on {0, D, 2D, ..., 1 - D},  h = D / 2,
                       first = s(x_t, t, h),  second = s(x_t + h first, t + h, h)     (without gradients)
                       L = || s(x_t, t, D) - (first + second) / 2 ||^2

Two jumps of h make one of 2h exactly when s is the true average velocity (the flow map is a semigroup:
``tests/plugins/test_shortcut.py`` checks the target on the closed-form Gaussian flow). The finest half step,
2^-levels (the paper's 1/128 at levels = 7), is read at d = 0, the flow-matching level: the chain of halvings is
anchored on the instantaneous velocity, as the paper's d -> 0 limit (its code feeds the flow-matching samples the
finest step's embedding instead; either anchors the chain). d is embedded like a time (``Input("time")``), and
at d = 0 the network is the flow's velocity field: every ODE sampler applies to a shortcut run too.

Where the paper's code differs and flowkit does not follow: its targets come from the EMA weights (here the weights
being trained, as in the paper's text), and it clips images' velocities to [-4, 4] (an image-space choice; not
done on general data). Sampling: ``shortcut:N`` takes N jumps x += d s(x, t, d), d = 1/N (N NFE); N a power of 2
up to 2^(levels-1) is a trained step size, others are interpolated by the network.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from flowkit.conditioning import Cond, cond_of
from flowkit.errors import ConfigError
from flowkit.methods import Method, per_sample_mse
from flowkit.models import Input
from flowkit.paths import AffinePath, expand_like
from flowkit.samplers import Predictor, Sampler


def halves_target(model: nn.Module, x: Tensor, t: Tensor, h: Tensor, h_in: Tensor, **cond: Tensor) -> Tensor:
    """(s(x, t, h) + s(x + h s(x, t, h), t + h, h)) / 2: the average velocity over [t, t + 2h] that two jumps of h
    give (the network is fed ``h_in``: h, or 0 at the finest level)."""
    first = model(x, t, d=h_in, **cond)
    second = model(x + expand_like(h, x) * first, t + h, d=h_in, **cond)
    return (first + second) / 2


class ShortcutJumps(Sampler):
    """N jumps of the step-size-conditioned network, x += d s(x, t, d) with d the grid's step (1 NFE each)."""

    ode = False  # needs a network conditioned on d: methods name it in their samplers
    per_step = 1

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        x = x0
        for t, u in zip(ts[:-1], ts[1:]):
            d = (u - t).expand(x.shape[0])
            x = x + (u - t) * model(x, t.expand(x.shape[0]), cond, d=d)
        return x, model.nfe


class Shortcut(Method):
    """Frans et al. 2024: flow matching at d = 0 and self-consistency across step sizes (module docstring)."""

    inputs = {"d": Input("time", default=0.0)}  # d = 0: the velocity, so every ODE sampler applies too
    samplers = ("shortcut",)

    def __init__(self, path: AffinePath, time_sampler, levels: int = 7, consistency: float = 0.25) -> None:
        if not 1 <= levels <= 30:
            raise ConfigError(f"method 'shortcut': levels={levels}; expected 1..30 (taught steps 1 .. 2^-(levels-1))")
        if not 0.0 < consistency < 1.0:
            raise ConfigError(f"method 'shortcut': consistency={consistency}; expected a fraction in (0, 1)")
        self.path, self.time_sampler, self.levels, self.consistency = path, time_sampler, levels, consistency

    def steps(self, m: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(t, D): taught steps D = 2^-k, k uniform in 0..levels-1, and t uniform on the multiples of D in [0, 1)."""
        k = torch.randint(0, self.levels, (m,), device=device)
        sections = 2 ** k
        t = torch.floor(torch.rand(m, device=device, dtype=torch.float64) * sections) / sections
        return t.to(dtype), (1.0 / sections).to(dtype)

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x0, x1, cond = batch["x0"], batch["x1"], cond_of(batch)
        n = x1.shape[0]
        m = max(1, min(n - 1, round(n * self.consistency))) if n > 1 else 0
        t = self.time_sampler(n - m, x1.device).to(x1.dtype)
        head = {k: v[: n - m] for k, v in cond.items()}
        flow = per_sample_mse(model(self.path.sample(x0[: n - m], x1[: n - m], t), t, d=torch.zeros_like(t), **head),
                              self.path.target(x0[: n - m], x1[: n - m], t))
        if m == 0:
            return {"loss": flow}
        s, big = self.steps(m, x1.device, x1.dtype)
        h = big / 2
        h_in = torch.where(h <= 0.5 ** self.levels, torch.zeros_like(h), h)  # the finest half: the velocity
        tail = {k: v[n - m:] for k, v in cond.items()}
        x_s = self.path.sample(x0[n - m:], x1[n - m:], s)
        with torch.no_grad():
            target = halves_target(model, x_s, s, h, h_in, **tail)
        doubled = per_sample_mse(model(x_s, s, d=big, **tail), target)
        return {"loss": torch.cat([flow, doubled]), "flow": flow.detach().mean().expand(n),
                "self_consistency": doubled.detach().mean().expand(n)}
