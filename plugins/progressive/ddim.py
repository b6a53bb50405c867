"""The inverse of a DDIM step (``flowkit.samplers.ddim``): the endpoints a step must predict to land on a point."""

from __future__ import annotations

from torch import Tensor

from flowkit.paths import AffinePath, expand_like


def endpoints_through(path: AffinePath, x_t: Tensor, t: Tensor, x_s: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """The (x0, x1) that one DDIM step from (x_t, t) must predict to land on x_s at time s: the solution of
    x_t = a_t x1 + s_t x0, x_s = a_s x1 + s_s x0 (Salimans & Ho 2022, eq. 8: x~ = (z'' - (s''/s) z) / (a'' - (s''/s) a))."""
    a_t, s_t = path.alpha(expand_like(t, x_t)), path.sigma(expand_like(t, x_t))
    a_s, s_s = path.alpha(expand_like(s, x_t)), path.sigma(expand_like(s, x_t))
    det = a_s * s_t - a_t * s_s
    return (a_s * x_t - a_t * x_s) / det, (s_t * x_s - s_s * x_t) / det
