"""Discretisation schedules N(k) and target-network EMA rates mu(k) of consistency models, and the time grid.

    ct    (Song et al. 2023, Table 3):  N(k) = ceil(sqrt(k/K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1
    ict   (Song & Dhariwal 2023, eq. 6): N(k) = min(s0 * 2^floor(k / K'), s1) + 1,  K' = floor(K / (log2 floor(s1/s0) + 1))
    constant:                            N(k) = s1 + 1
    mu(k) = exp(s0 ln(mu0) / N(k)) with the ct schedule (Song et al. 2023), mu0 itself with the others
    (CD's fixed target decay); mu0 = 0 gives mu = 0, iCT's choice: the target network is the online
    network under stop-gradient.

k is the training step and K the run's total (trainer.max_steps). N(k) counts grid points; the grid is
t_i = i / (N - 1), i = 0..N-1, uniform in our time (t=0 noise, t=1 data), with t_{N-1} = 1 the boundary.
"""

from __future__ import annotations

import math

SCHEDULES = ("ict", "ct", "constant")


def discretisation(schedule: str, k: int, total: int, s0: int, s1: int) -> int:
    """N(k): the number of grid points at training step k of ``total``."""
    if schedule == "ct":
        return math.ceil(math.sqrt(k / total * ((s1 + 1) ** 2 - s0 ** 2) + s0 ** 2) - 1) + 1
    if schedule == "ict":
        k_prime = math.floor(total / (math.log2(math.floor(s1 / s0)) + 1))
        return min(s0 * 2 ** math.floor(k / max(k_prime, 1)), s1) + 1
    if schedule == "constant":
        return s1 + 1
    raise ValueError(f"schedule='{schedule}' is not one of: {', '.join(SCHEDULES)}")


def target_decay(schedule: str, mu0: float, s0: int, n: int) -> float:
    """mu(k): exp(s0 ln(mu0) / N(k)) with the ct schedule, else mu0; 0 when mu0 = 0."""
    if schedule == "ct" and mu0 > 0:
        return math.exp(s0 * math.log(mu0) / n)
    return mu0
