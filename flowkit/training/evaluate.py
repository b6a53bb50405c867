"""Scoring a trained model: each sampler's samples in the target dataset's own metric, over repeated draws,
against the metric's floor (real data against the reference); straightness; label accuracy."""

from __future__ import annotations

import statistics
import sys
from typing import Any

import torch
from torch import Tensor

from flowkit.conditioning import Cond
from flowkit.data import Dataset
from flowkit.metrics.distances import straightness
from flowkit.samplers import Predictor
from flowkit.samplers.integrate import solve_trajectory


GENERAL_EVALUATION = {"n": 2000, "repeats": 5, "solver": "dopri5", "compare": ["euler:1", "euler:4", "midpoint:4", "rk4:4"]}
SIZED_MIN_N = 64  # a sized evaluation draws at least this many samples, however short the run


def resolve_eval(ecfg: dict[str, Any], parts: Any, training_evaluations: int) -> tuple[dict[str, Any], str | None]:
    """``eval.*`` with its null keys chosen: the data's own defaults (``Dataset.evaluation``), else the general
    ones. Where the data asks for it (``sized``: images and codes) and ``eval.n`` was left null, n is cut so that
    the planned network evaluations of one sample times the samples (NFE x n x repeats, over the fixed-step
    samplers) stay within the run's own training, ``training_evaluations`` (steps x batch x 3: a forward and a
    backward), and at least SIZED_MIN_N. Returns the resolved section and a note saying what was chosen for the data
    (None where every key was given or the general defaults apply)."""
    chosen = {key: value for key, value in ecfg.items() if key in GENERAL_EVALUATION and value is None}
    if not chosen:
        return ecfg, None
    own = parts.target.evaluation
    resolved = {**ecfg, **{key: own.get(key, GENERAL_EVALUATION[key]) for key in chosen}}
    if not any(key in own for key in chosen):
        return resolved, None  # the general defaults, as they always were: nothing to say
    why = "for this data"
    if own.get("sized") and "n" in chosen:
        per_sample = sum(parts.planned_nfe(spec) or 0 for spec in [resolved["solver"], *resolved["compare"]])
        if per_sample:
            fits = training_evaluations // (per_sample * resolved["repeats"])
            resolved["n"] = max(SIZED_MIN_N, min(resolved["n"], fits))
            why += f", n sized to the training's {training_evaluations:,} network evaluations of a sample"
    said = ", ".join(f"{key}={resolved[key]}" for key in ("solver", "compare", "n", "repeats") if key in chosen)
    return resolved, f"evaluation chosen ({why}): {said}; set eval.* to choose"


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def score(target: Dataset, samples: Tensor, references: list[Tensor]) -> tuple[float, float]:
    """(mean, std) of ``target.quality`` of consecutive chunks of ``samples``, one per reference draw; NaN when a
    sample is not finite."""
    samples = samples.float().cpu()
    if not torch.isfinite(samples).all():
        return float("nan"), float("nan")
    n = samples.shape[0] // len(references)
    return mean_std([target.quality(samples[i * n:(i + 1) * n], ref) for i, ref in enumerate(references)])


def evaluation_draws(parts: Any, n: int, k: int, seed: int, device: torch.device
                     ) -> tuple[Tensor, list[Tensor], tuple[float, float]]:
    """What an evaluation scores against, drawn in one order from ``seed``: ``n * k`` source points, ``k``
    reference draws of ``n`` real points, and the metric's floor (``k`` further real draws against them, mean and
    std). The training summary and ``flowkit compare`` both draw here: the same seed gives the same numbers. The
    target's ``reference`` raises where its data is gone (``flowkit.data.deferred.NeedsData``)."""
    target = parts.target
    generator = torch.Generator().manual_seed(seed)
    x0 = parts.source.sample(n * k, generator).to(device)
    refs = [target.reference(n, generator) for _ in range(k)]
    others = [target.sample(n, generator) for _ in range(k)]
    return x0, refs, mean_std([target.quality(real, ref) for real, ref in zip(others, refs)])


def plan(parts: Any, specs: list[str], samples: int, seconds_per_eval: float | None = None) -> str:
    """The planned cost of drawing ``samples`` points with each sampler: NFE x samples (fixed-step samplers say
    their NFE in advance; an adaptive one cannot) and, given the seconds one network evaluation of one sample took
    in training, a time estimate."""
    parts_of = []
    known = 0
    for spec in specs:
        nfe = parts.planned_nfe(spec)
        parts_of.append(f"{spec} (adaptive: NFE not known in advance)" if nfe is None else f"{spec} (at most {nfe} NFE)")
        known += 0 if nfe is None else nfe * samples
    if not known:
        return f"{samples:,} samples each with {', '.join(parts_of)}: the cost is known as it runs"
    text = f"{samples:,} samples each with {', '.join(parts_of)}: {known:,} sample-evaluations (NFE x samples) planned"
    if seconds_per_eval:
        text += f", about {known * seconds_per_eval:.0f} s at the training's pace"
    return text


def sample_reporting(parts: Any, x0: Tensor, spec: str, what: str, **options: Any) -> tuple[Tensor, int]:
    """``parts.sample`` with progress in network evaluations (a bar on a terminal, a plain line every 30 s and at
    the end otherwise: ``flowkit.runtime.ticker``)."""
    from flowkit.runtime.ticker import Ticker

    with Ticker(f"{what} with {spec}", parts.planned_nfe(spec), "NFE") as tick:
        return parts.sample(x0, spec, progress=tick, **options)


@torch.no_grad()
def sampler_table(parts: Any, ecfg: dict[str, Any], device: torch.device, cond: Cond | None = None,
                  grid: str | None = None, report: bool = False,
                  pace: float | None = None) -> tuple[dict[str, Any], Tensor | None, Tensor]:
    """The target's metric for each sampler in ``[eval.solver] + eval.compare`` and its floor, each a mean
    over ``eval.repeats`` independent draws of ``eval.n`` points (README, Benchmarks: on 8gaussians a single draw's
    W2 swings by +-30% with the per-mode counts, so one pair of draws decides nothing).

    ``report``: print the planned cost first and each sampler's progress (to stderr; ``pace``, the seconds one
    network evaluation of one sample took in training, gives a time estimate).

    Returns the table, the main sampler's first sample set and the first reference draw (for the figure)."""
    n, k, target = ecfg["n"], ecfg["repeats"], parts.target
    specs = [ecfg["solver"], *ecfg["compare"]]
    if report:
        print(f"final evaluation: {target.metric} over {k} draw{'s' if k > 1 else ''} of {n:,} against its floor; "
              f"{plan(parts, specs, n * k, pace)}", file=sys.stderr, flush=True)
    x0, refs, floor = evaluation_draws(parts, n, k, ecfg["seed"], device)
    rows, first = [], None
    options = {"grid": grid, "cond": cond, "rtol": ecfg["rtol"], "atol": ecfg["atol"]}
    for spec in specs:
        if report:
            x1, nfe = sample_reporting(parts, x0, spec, f"evaluating {target.metric}", **options)
        else:
            x1, nfe = parts.sample(x0, spec, **options)
        value, std = score(target, x1, refs)
        if first is None and value == value:
            first = x1[:n].float().cpu()
        rows.append({"solver": spec, "nfe": nfe, "value": value, "std": std})
    straight, along = None, None
    if parts.method.ode:
        paths = path_solver(ecfg["solver"], ecfg["rtol"], ecfg["atol"])
        straight = straightness_along_paths(Predictor.of(parts.method, parts.model, parts.path).velocity_field(cond),
                                            x0[:n], paths)
        along = ecfg["solver"] if "steps" in paths else "dopri5"
    table = {"metric": target.metric, "floor": floor[0], "floor_std": floor[1], "rows": rows, "straightness": straight,
             "straightness_along": along}
    return table, first, refs[0]


def path_solver(spec: str, rtol: float, atol: float) -> dict[str, Any]:
    """The solver straightness is measured along: the evaluation's own sampler when the registry says it is a
    fixed-step solver of the velocity ODE (its cost is what the evaluation already pays; ``heun:8`` is torchdiffeq's
    heun2 on 8 steps), else dopri5 at the evaluation's tolerances."""
    from flowkit.samplers import SAMPLERS, parse_sampler
    from flowkit.samplers.ode import FixedStep

    name, steps = parse_sampler(spec)
    if steps and issubclass(SAMPLERS.get(name), FixedStep):
        return {"method": SAMPLERS.get(name).method, "steps": steps}
    return {"method": "dopri5", "rtol": rtol, "atol": atol}


def straightness_along_paths(velocity, x0: Tensor, solver: dict[str, Any]) -> float:
    """Straightness (Liu et al. 2022) of the model's own paths from ``x0``, solved with ``solver`` options
    (method, steps or rtol/atol) and read at 65 evenly spaced times for adaptive solvers."""
    states, times, _ = solve_trajectory(velocity, x0, points=65, **solver)
    return straightness(velocity, states, times)


def label_accuracy(target: Dataset, samples: Tensor, labels: Tensor) -> float | None:
    """Share of samples that the target's own classifier puts in the class they were asked for; None when the
    target has none."""
    predicted = target.classify(samples.float().cpu())
    if predicted is None:
        return None
    return float((predicted.cpu() == labels.cpu()[: predicted.shape[0]]).float().mean())
