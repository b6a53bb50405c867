"""torchdiffeq's solvers of the velocity ODE dx/dt = v(x, t), registered one sampler per method.

Fixed-step solvers (``euler``, ``midpoint``, ``heun`` (torchdiffeq's ``heun2``), ``heun3``, ``rk4``) step on the call's time grid; adaptive
ones (``dopri5``, ``dopri8``, ``bosh3``, ``fehlberg2``, ``adaptive_heun``) choose their own steps to
``rtol``/``atol``. One NFE is one evaluation of the velocity on the batch (torchdiffeq's own count of
stages: rk4 is its 3/8 rule, 4 NFE a step).
"""

from __future__ import annotations

from torch import Tensor
from flowkit.conditioning import Cond
from flowkit.samplers.base import Predictor, Sampler, register_sampler
from flowkit.samplers.integrate import ADAPTIVE, FIXED, odeint_checked

SUMMARIES = {"euler": "Euler's method, 1 NFE a step.",
             "midpoint": "The explicit midpoint rule, 2 NFE a step.",
             "heun": "Heun's second-order method (the explicit trapezoidal rule), 2 NFE a step.",
             "heun3": "Heun's third-order Runge-Kutta method, 3 NFE a step.",
             "rk4": "Classical fourth-order Runge-Kutta (the 3/8 rule), 4 NFE a step.",
             "dopri5": "Dormand-Prince 5(4), adaptive to rtol/atol.",
             "dopri8": "Dormand-Prince 8(7), adaptive to rtol/atol.",
             "bosh3": "Bogacki-Shampine 3(2), adaptive to rtol/atol.",
             "fehlberg2": "Runge-Kutta-Fehlberg 2(1), adaptive to rtol/atol.",
             "adaptive_heun": "Heun-Euler 2(1), adaptive to rtol/atol."}


def integrate(model: Predictor, x0: Tensor, ts: Tensor, method: str, cond: Cond | None,
              **options: float) -> Tensor:
    """The states of dx/dt = model.velocity(x, t) at every time of ``ts`` (torchdiffeq ``odeint``)."""
    def f(t: Tensor, x: Tensor) -> Tensor:
        return model.velocity(x, t.expand(x.shape[0]), cond)

    return odeint_checked(f, x0, ts, method, **options)


class FixedStep(Sampler):
    """Base of the fixed-step torchdiffeq solvers: one step per interval of the grid."""

    method = ""

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        return integrate(model, x0, ts, self.method, cond)[-1], model.nfe


class Adaptive(Sampler):
    """Base of the adaptive torchdiffeq solvers: steps chosen to the tolerances."""

    adaptive = True
    method = ""

    def __init__(self, rtol: float = 1e-5, atol: float = 1e-5) -> None:
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol={rtol}, atol={atol} are out of range; expected both > 0")
        self.rtol, self.atol = rtol, atol

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        return integrate(model, x0, ts, self.method, cond, rtol=self.rtol, atol=self.atol)[-1], model.nfe


NAMES = {"heun2": "heun"}  # sampler name of a torchdiffeq method, where they differ
STAGES = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}  # network evaluations of a step

for _methods, _base in ((FIXED, FixedStep), (ADAPTIVE, Adaptive)):
    for _method in _methods:
        _name = NAMES.get(_method, _method)
        register_sampler(_name)(type(_name, (_base,), {"method": _method, "__doc__": SUMMARIES[_name],
                                                       "per_step": STAGES.get(_method),
                                                       "__module__": __name__, "__qualname__": _name}))
