"""The post-training summary: W2 against its sampling floor, and samplers side by side."""

from __future__ import annotations

import statistics
from typing import Any

import torch
from torch import Tensor, nn

from flowkit.data import Distribution
from flowkit.errors import ConfigError
from flowkit.metrics import straightness, w2
from flowkit.sampling import parse_solver, solve_trajectory


def solver_options(spec: str, rtol: float, atol: float) -> dict[str, Any]:
    name, steps = parse_solver(spec)
    return {"method": name, "steps": steps} if steps else {"method": name, "rtol": rtol, "atol": atol}


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@torch.no_grad()
def sampler_table(method: Any, model: nn.Module, source: Distribution, target: Distribution,
                  ecfg: dict[str, Any], device: torch.device) -> tuple[dict[str, Any], Tensor]:
    """W2 of each sampler in ``[eval.solver] + eval.compare`` and the floor, each a mean over
    ``eval.repeats`` independent draws of ``eval.n`` points (BENCHMARKS.md): on 8gaussians a single
    draw's W2 swings by +-30% with the per-mode counts, so one pair of draws decides nothing.

    Returns the table and the main solver's first sample set (for the figure).
    """
    n, k = ecfg["n"], ecfg["repeats"]
    generator = torch.Generator().manual_seed(ecfg["seed"])
    x0 = source.sample(n * k, generator).to(device)
    refs = [target.sample(n, generator) for _ in range(k)]
    others = [target.sample(n, generator) for _ in range(k)]
    floor = mean_std([w2(a, b) for a, b in zip(refs, others)])
    rows, first = [], None
    for spec in [ecfg["solver"], *ecfg["compare"]]:
        x1, nfe = method.sample(model, x0, **solver_options(spec, ecfg["rtol"], ecfg["atol"]))
        x1 = x1.float().cpu()
        if not torch.isfinite(x1).all():
            rows.append({"solver": spec, "nfe": nfe, "w2": float("nan"), "w2_std": float("nan")})
            continue
        first = x1[:n] if first is None else first
        mean, std = mean_std([w2(x1[i * n:(i + 1) * n], refs[i]) for i in range(k)])
        rows.append({"solver": spec, "nfe": nfe, "w2": mean, "w2_std": std})
    paths = {"method": "dopri5", "rtol": ecfg["rtol"], "atol": ecfg["atol"]}
    straight = straightness_along_paths(model, x0[:n], paths) if defines_ode(method) else None
    return {"floor": floor[0], "floor_std": floor[1], "rows": rows, "straightness": straight}, first


def defines_ode(method: Any) -> bool:
    """Whether the network is a velocity field (straightness and likelihood mean something); a method
    whose network is not (a consistency function) says ``ode = False``."""
    return getattr(method, "ode", True)


def samples_with(method: Any, spec: str) -> bool:
    """Whether ``method`` can sample with solver ``spec``: any solver for a velocity field, only its own
    ``euler:N`` sampler otherwise."""
    return defines_ode(method) or parse_solver(spec)[0] == "euler"


def check_eval_solvers(method: Any, ecfg: dict[str, Any]) -> None:
    """Refuse, before training, an eval solver the method cannot sample with."""
    bad = [spec for spec in [ecfg["solver"], *ecfg["compare"]] if not samples_with(method, spec)]
    if bad:
        raise ConfigError(f"eval solver(s) {', '.join(bad)}: this method's network is not a velocity field and "
                          "samples only with euler:N (N steps of its own sampler)")


def straightness_along_paths(model: nn.Module, x0: Tensor, solver: dict[str, Any]) -> float:
    """Straightness (Liu et al. 2022) of the model's own paths from ``x0``, solved with ``solver``
    options (``solver_options``) and read at 65 evenly spaced times for adaptive solvers."""
    states, times, _ = solve_trajectory(model, x0, points=65, **solver)
    return straightness(model, states, times)


def label_accuracy(cfg: dict[str, Any], samples: Tensor, labels: Tensor) -> float | None:
    """Share of samples that land in the class they were asked for: the nearest mode on 8gaussians,
    the fixed digits classifier's prediction on digits; None for other targets."""
    target = cfg["data"]["target"]
    if target == "8gaussians" and not cfg["data"]["path"]:
        from flowkit.data import DATASETS

        predicted = torch.cdist(samples.float(), DATASETS.build({"name": "8gaussians"}).centers).argmin(1)
    elif target == "digits" and not cfg["data"]["path"]:
        from flowkit.digits_features import digits_classifier

        classifier = digits_classifier()[0]  # trained on first use: not under no_grad
        with torch.no_grad():
            predicted = classifier(samples.float().clamp(-1, 1)).argmax(1)
    else:
        return None
    return float((predicted == labels.to(predicted.device)).float().mean())
