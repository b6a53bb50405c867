"""Methods: a loss (and, where a method samples differently, a sampler) over one shared model.

Every method answers ``loss(model, batch) -> {"loss": (batch,) tensor, ...}``: per-sample terms,
which the trainer reduces and logs. ``batch`` holds the coupled pair ``x0`` (source) and ``x1``
(data) and the training ``step``. Methods receive their path, time sampler, data shape, the run's
``total_steps`` and its number of label ``classes`` (0: unconditional) when they ask for them; their
own ``__init__`` arguments are hyperparameters only.

Optional, for methods that need them (the trainer and evaluators look for them, nothing else does):
``model_options`` (inputs the network must take, e.g. MeanFlow's ``{"times": 2}``), ``state_dict`` /
``load_state_dict`` (the method's own training state, e.g. a consistency model's target network, saved
in checkpoints and restored on resume), ``ode = False`` (the
network is not a velocity field: no ODE solvers, straightness or likelihood), ``next_round`` and
``critic`` with ``critic_loss(model, batch)`` and ``critic_optim`` (a second network trained against
the model, e.g. a discriminator: the trainer then optimises both, manually, each with its own AdamW
and schedule, and checkpoints both).
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn

from flowkit.conditioning import cond_of
from flowkit.paths import AffinePath
from flowkit.registry import Registry
from flowkit.sampling import solve

METHODS: Registry = Registry("method", "flowkit.methods")
register_method = METHODS.register


class Method(Protocol):
    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]: ...

    def sample(self, model: nn.Module, x0: Tensor, **solver: object) -> tuple[Tensor, int]: ...


def per_sample_mse(a: Tensor, b: Tensor) -> Tensor:
    """Mean of (a - b)^2 over every dimension but the batch: shape (batch,)."""
    return (a - b).pow(2).flatten(1).mean(1)


@register_method("cfm")
class CFM:
    """Conditional flow matching (Lipman et al. 2023, eq. 9; Tong et al. 2024, eq. 13).

        t ~ time_sampler,  x_t = alpha(t) x1 + sigma(t) x0,  u_t = alpha'(t) x1 + sigma'(t) x0
        L(theta) = || v_theta(x_t, t) - u_t ||^2      (per sample, mean over data dimensions)

    Which pairs (x0, x1) are drawn is the coupling's business (independent: I-CFM; minibatch OT:
    OT-CFM); which alpha/sigma, the path's.
    """

    def __init__(self, path: AffinePath, time_sampler) -> None:
        self.path = path
        self.time_sampler = time_sampler

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        x0, x1 = batch["x0"], batch["x1"]
        t = self.time_sampler(x1.shape[0], x1.device).to(x1.dtype)
        x_t = self.path.sample(x0, x1, t)
        return {"loss": per_sample_mse(model(x_t, t, **cond_of(batch)), self.path.target(x0, x1, t))}

    def sample(self, model: nn.Module, x0: Tensor, **solver: object) -> tuple[Tensor, int]:
        """Integrate dx/dt = v_theta(x, t) from t=0 to t=1 (``flowkit.sampling.solve`` options)."""
        return solve(model, x0, **solver)
