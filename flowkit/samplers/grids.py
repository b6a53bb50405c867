"""Time grids: where a fixed-step sampler evaluates the model, chosen per sampling call (``grid=``).

A grid is a function ``(path, steps) -> ts``: ``steps + 1`` increasing times from t=0 (source) to t=1
(data). Register your own with ``@register_grid("name")`` or the entry-point group ``flowkit.grids``.
A grid may take one more parameter with a default (``karras``'s rho, ``shift``'s s), set in the spec
after a colon: ``grid=shift:6``.

Built in:

    uniform   t_k = k / N.
    logsnr    uniform in lambda = log(alpha / sigma) (Lu et al. 2022, DPM-Solver's "logSNR" steps).
    karras    the noise-to-signal ratio sigma/alpha spaced by EDM's rho rule (Karras et al. 2022, eq. 5),
              sigma_k = (smax^(1/rho) + k/N (smin^(1/rho) - smax^(1/rho)))^rho, rho = 7.
    ends      t = (1 - cos(pi u)) / 2, u uniform: both ends refined (steps of O(h^2) there), so that first-order
              end steps and paths not smooth in t at an end (VP) keep a sampler's order.
    graded    uniform but for an outer share of u at each end, where t grows as u^p (p = 2): steps of O(h^p)
              at the ends, O(h) elsewhere. The share is 10% from 32 steps up and shrinks in proportion below
              (5% at 16 steps, 2.5% at 8), so that few-step sampling, where a trained network's own error
              dominates, stays close to uniform. The default grid of the exponential integrators (DPM-Solver-2,
              ++(2M), ++(3M)) and EDM (their ``default_grid``): what they reach on it, and what it costs at few
              steps, is in flowkit/samplers/dpm.py and flowkit/samplers/edm.py.
    shift     SD3's timestep shift (Esser et al. 2024): the uniform grid with the noise level
              n = 1 - t mapped to s n / (1 + (s - 1) n), s = 3: more steps at high noise.

A sampling call that names no grid runs on its sampler's ``default_grid`` (``uniform`` unless the sampler says).

``logsnr`` and ``karras`` span the ratio sigma/alpha in [SIGMA_MIN, SIGMA_MAX] (EDM's 0.002 and 80, or the
path's own range where narrower); their first and last times are then the path's own ends, t=0 (pure
source, where alpha may be 0 and lambda = -inf) and t=1 (the data), so the first step starts from the
source and the last one lands on the data, as every sampler here expects.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable

import torch
from torch import Tensor

from flowkit.errors import ConfigError, ContractError
from flowkit.paths import AffinePath
from flowkit.registry import Registry

Grid = Callable[[AffinePath, int], Tensor]


def check_grid(name: str, obj: object) -> None:
    """The registration check: a function of (path, steps), and at most one more parameter with a default, that
    gives steps + 1 increasing times from 0 to 1 on the rectified path for 1, 3 and 8 steps."""
    params = list(inspect.signature(obj).parameters.values()) if callable(obj) and not inspect.isclass(obj) else []
    required = [p for p in params if p.default is inspect.Parameter.empty]
    if len(required) != 2 or len(params) > 3:
        raise ContractError(f"grid '{name}': {obj!r} is not a function of (path, steps) with at most one more "
                            "parameter that has a default")
    from flowkit.paths.affine import Rectified  # the class itself: a registry lookup would load plugins mid-import

    path = Rectified()
    for steps in (1, 3, 8):
        try:
            ts = obj(path, steps)
        except Exception as exc:  # noqa: BLE001 - any failure of an outside unit, reported as its contract's
            raise ContractError(f"grid '{name}' fails for {steps} steps on the rectified path: "
                                f"{type(exc).__name__}: {exc}") from None
        checked(name, ts, steps)


def checked(spec: str, ts: object, steps: int) -> Tensor:
    """``ts`` as float64 times, or a ContractError unless they are steps + 1 increasing times from 0 to 1."""
    try:
        ts = torch.as_tensor(ts, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ContractError(f"grid '{spec}' gave a {type(ts).__name__}, not times") from None
    if ts.shape != (steps + 1,) or not (ts[1:] > ts[:-1]).all() or ts[0] != 0 or ts[-1] != 1:
        raise ContractError(f"grid '{spec}' gave {ts.tolist()[:6]}... for {steps} steps; expected {steps + 1} "
                            "increasing times from 0 to 1")
    return ts


GRIDS: Registry = Registry("grid", "flowkit.grids", check=check_grid)
register_grid = GRIDS.register


@register_grid("uniform")
def uniform(path: AffinePath, steps: int) -> Tensor:
    """Uniform in t: t_k = k / steps."""
    return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)


SIGMA_MIN, SIGMA_MAX = 0.002, 80.0  # the noise-to-signal ratio sigma/alpha spanned by logsnr and karras (EDM's)


def _on_log_snr(path: AffinePath, lam: Tensor) -> Tensor:
    """The times of log-SNRs ``lam`` (increasing), with the first and last moved to the path's ends 0 and 1."""
    ts = path.time_at_log_snr(lam)
    ts[0], ts[-1] = 0.0, 1.0
    return ts


def _log_snr_range(path: AffinePath) -> tuple[float, float]:
    ends = path.log_snr(torch.tensor([0.0, 1.0], dtype=torch.float64)).tolist()
    return max(ends[0], -math.log(SIGMA_MAX)), min(ends[1], -math.log(SIGMA_MIN))


@register_grid("logsnr")
def log_snr(path: AffinePath, steps: int) -> Tensor:
    """Uniform in lambda = log(alpha / sigma) over sigma/alpha in [0.002, 80], ends at t=0 and t=1."""
    lo, hi = _log_snr_range(path)
    return _on_log_snr(path, torch.linspace(lo, hi, steps + 1, dtype=torch.float64))


@register_grid("karras")
def karras(path: AffinePath, steps: int, rho: float = 7.0) -> Tensor:
    """sigma/alpha spaced by EDM's rho rule (rho = 7) over [0.002, 80], ends at t=0 and t=1."""
    if not rho > 0:
        raise ConfigError(f"grid karras:{rho}: rho must be > 0")
    lo, hi = _log_snr_range(path)
    smax, smin = math.exp(-lo) ** (1 / rho), math.exp(-hi) ** (1 / rho)
    ratios = (smax + torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64) * (smin - smax)) ** rho
    return _on_log_snr(path, -torch.log(ratios))


@register_grid("ends")
def ends(path: AffinePath, steps: int) -> Tensor:
    """t = (1 - cos(pi u)) / 2 for u uniform: steps of O(h^2) at both ends, where log-SNR is infinite (a sampler
    in log-SNR steps first-order there) and a path such as VP is not smooth in t; smooth in u elsewhere."""
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    return (1 - torch.cos(torch.pi * u)) / 2


GRADED_SHARE, GRADED_FROM = 0.1, 32  # ``graded`` grades the outer 10% of u at each end from 32 steps up


@register_grid("graded")
def graded(path: AffinePath, steps: int, p: float = 2.0) -> Tensor:
    """t(u) with density min(1, (u / e)^(p - 1)) in u from each end, so t ~ u^p there: the first and last steps are
    O(h^p), the steps beyond the share e uniform; e = 10% min(1, steps / 32). p = 1 is the uniform grid."""
    if not p >= 1:
        raise ConfigError(f"grid graded:{p}: the grading power p must be >= 1 (1 is uniform, 2 the default)")
    e = GRADED_SHARE * min(1.0, steps / GRADED_FROM)

    def mass(v: Tensor) -> Tensor:  # the integral of the density from the end to v, for v in [0, 1/2]
        return torch.where(v < e, e * (v / e) ** p / p, v - e + e / p)

    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    half = 2 * mass(torch.tensor(0.5, dtype=torch.float64))
    ts = torch.where(u <= 0.5, mass(u) / half, 1 - mass(1 - u) / half)
    ts[0], ts[-1] = 0.0, 1.0
    return ts


@register_grid("shift")
def shift(path: AffinePath, steps: int, s: float = 3.0) -> Tensor:
    """SD3's shift: noise level n = 1 - t of the uniform grid mapped to s n / (1 + (s - 1) n), s = 3."""
    if not s > 0:
        raise ConfigError(f"grid shift:{s}: the shift must be > 0")
    n = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return 1 - s * n / (1 + (s - 1) * n)


def parse_grid(spec: str) -> tuple[str, float | None]:
    """'shift:6' -> ('shift', 6.0); 'logsnr' -> ('logsnr', None); an unknown name or bad parameter is a ConfigError."""
    name, colon, value = str(spec).strip().partition(":")
    grid = GRIDS.get(name)
    if not colon:
        return name, None
    if len(inspect.signature(grid).parameters) < 3:
        raise ConfigError(f"grid '{spec}': '{name}' takes no parameter")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ConfigError(f"grid '{spec}': the parameter after ':' must be a finite number, e.g. '{name}:3'")
    return name, number


def grid_times(spec: str, path: AffinePath, steps: int) -> Tensor:
    """The checked grid (float64 on the CPU): ``steps + 1`` times, increasing, from 0 to 1."""
    name, parameter = parse_grid(spec)
    grid = GRIDS.get(name)
    if parameter is None:
        return checked(spec, grid(path, steps), steps)
    try:  # the grid passed its contract at registration: times it cannot give come from the user's parameter
        return checked(spec, grid(path, steps, parameter), steps)
    except ConfigError:  # the grid's own word on its parameter
        raise
    except (ArithmeticError, ValueError, ContractError) as exc:
        raise ConfigError(f"grid '{spec}': the parameter {parameter:g} gives no usable times for {steps} steps on "
                          f"this path ({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); try a moderate "
                          "value") from None
