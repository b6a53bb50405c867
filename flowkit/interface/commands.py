"""``flowkit sample``, ``eval`` and ``compare``: checkpoints in, samples and tables out.

Arguments are ``key=value`` tokens checked against the small schemas below (the same parser as
recipes). Every checkpoint is loaded with ``weights_only=True``; sampling uses its EMA weights, a sampler
its method supports (``flowkit.samplers``) and the target dataset's own metric (``flowkit.data``),
so distilled students compare like any model.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

from flowkit.config.build import load_run
from flowkit.runtime.checkpoint import write_atomically
from flowkit.conditioning import Cond, conditioning, sampling_labels
from flowkit.config.schema import apply_overrides, check_ranges
from flowkit.data.arrays import Rows, load_array
from flowkit.data.deferred import NeedsData
from flowkit.errors import ConfigError, TrainingError, check_name_length
from flowkit.training.evaluate import (evaluation_draws, label_accuracy, path_solver, sample_reporting, score,
                                      straightness_along_paths)
from flowkit.samplers.grids import parse_grid
from flowkit.metrics.likelihood import bits_per_dim, log_likelihood
from flowkit.runtime.memory import ReportOutOfMemory, check_draw_fits
from flowkit.metrics.plots import plot_quality_vs_nfe, save_samples
from flowkit.samplers import Predictor, grid_of, parse_sampler, why_not


@dataclass
class SamplingArgs:
    """What every sampling verb takes: the time grid, and for class-conditional models the label and guidance."""

    grid: Optional[str] = None  # fixed-step samplers' time grid (``flowkit list``: grids); None: each one's default
    label: int = -1  # class-conditional models: the class to sample, or -1 for uniformly random classes
    guidance: Optional[float] = None  # classifier-free guidance weight w (None: 1, the conditional model)
    classifier: str = ""  # classifier guidance: a classifier run (directory or .ckpt) trained on the model's path
    classifier_scale: float = 1.0  # its scale s: the score gains s grad log p(y | x_t, t)


@dataclass
class SampleArgs(SamplingArgs):
    ckpt: str = ""
    n: int = 10_000
    solver: str = "dopri5"  # a sampler spec: dopri5, euler:8, ddim:10, ... (``flowkit list``: samplers)
    rtol: float = 1e-5
    atol: float = 1e-5
    out: str = "samples.pt"
    seed: int = 0
    device: str = "cpu"


@dataclass
class EvalArgs(SamplingArgs):
    ckpt: str = ""
    n: int = 2000
    repeats: int = 3
    solver: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    nll_n: int = 500
    seed: int = 0
    device: str = "cpu"
    out: str = ""  # a .json file for the numbers, if set


@dataclass
class InvertArgs(SamplingArgs):
    ckpt: str = ""
    input: str = ""  # ``in=``: a .npy or .pt array of data points, shape (n, *data_shape)
    solver: str = "dopri5"  # a deterministic sampler spec: dopri5, euler:50, ddim:50, dpm++2m:20, edm:20, ...
    rtol: float = 1e-5
    atol: float = 1e-5
    out: str = "inverted.npy"  # the source points (.npy or .pt)
    device: str = "cpu"


@dataclass
class CompareArgs(SamplingArgs):
    ckpt: str = ""  # one checkpoint or run dir, or several separated by commas
    solvers: str = "euler:1,euler:4,midpoint:4,rk4:4,dopri5"
    n: int = 2000
    repeats: int = 5  # the metric is a mean over this many draws of n, with its floor, as in the training summary
    rtol: float = 1e-5
    atol: float = 1e-5
    reference_tol: float = 1e-7  # dopri5 tolerance of the reference solution the error is measured against
    seed: int = 1234  # the training summary's (eval.seed): the same n, repeats and seed give its numbers
    device: str = "cpu"
    out: str = ""  # writes <out>.json and <out>.png; default: compare.json / compare.png in the first run's directory


@dataclass
class EncodeData:
    """The data ``flowkit encode`` reads: the keys of a recipe's ``data`` section that say what the data is."""

    target: Any = "digits"  # a registered finite dataset, folder:PATH, images:FILE, or a mapping with a name
    path: Optional[str] = None  # a .npy / .pt array of rows, shape (n, *data_shape)
    resolution: Optional[int] = None  # image datasets: shorter side resized to this, centre-cropped square
    flip: bool = False  # with an encoder: the mirror images encoded too; without: flips when the shards are drawn
    features: Optional[str] = None  # image datasets: FD in this feature network (recorded for scoring)
    encoder: Optional[str] = None  # NAME[:ARG]: write this encoder's codes (none: the data itself, uint8 for images)


@dataclass
class EncodeArgs:
    data: EncodeData = field(default_factory=EncodeData)
    out: str = ""  # the shard folder (an encoding killed midway resumes into it)
    shard_mb: float = 8.0  # the size of one shard file: a loader process holds data.mix + 1 of them
    reference: int = 2000  # real rows kept beside the shards (reference.npy) for scoring samples
    dtype: str = "float32"  # codes: float32 | float16 (images without an encoder are kept as uint8)
    seed: int = 0  # the shuffled order the rows are written in
    device: str = "auto"  # where the encoder runs: auto (the GPU if there is one), cpu, cuda, cuda:N


ENCODE_RANGES = {
    "shard_mb": (lambda v: 0 < v <= 4096, "in (0, 4096]"),
    "reference": (lambda v: v >= 1, ">= 1"),
    "seed": (lambda v: v >= 0, ">= 0"),
    "data.resolution": (lambda v: v is None or 1 <= v <= 4096, "null or in [1, 4096]"),
}


# what the types cannot say (a NaN tolerance fails "> 0" too)
ARG_RANGES = {
    "n": (lambda v: v >= 2, ">= 2"),
    "repeats": (lambda v: v >= 1, ">= 1"),
    "nll_n": (lambda v: v >= 2, ">= 2"),
    "rtol": (lambda v: v > 0, "> 0 (a finite tolerance)"),
    "atol": (lambda v: v > 0, "> 0 (a finite tolerance)"),
    "reference_tol": (lambda v: v > 0, "> 0 (a finite tolerance)"),
    "seed": (lambda v: 0 <= v < 2**32, "in [0, 2^32)"),
    "guidance": (lambda v: v is None or math.isfinite(v), "a finite weight (or null)"),
    "classifier_scale": (lambda v: math.isfinite(v), "a finite scale"),
}


def check_finite_output(x: torch.Tensor, what: str, out: Path) -> None:
    """Non-finite samples are never written: one line (exit 1) naming how many and what to change."""
    bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
    if bad:
        raise TrainingError(f"{bad} of {x.shape[0]} {what} are non-finite (NaN or inf); nothing was written to "
                            f"'{out}': lower the sampler's noise or scale options, the guidance, or use more steps")


def parse_args(schema: type, tokens: list[str]):
    args = apply_overrides(OmegaConf.structured(schema), tokens)
    if not args.ckpt:
        raise ConfigError("ckpt=... is required (a run directory or a .ckpt file)")
    check_ranges(args, ARG_RANGES)
    out = Path(args.out) if args.out else None
    if out is not None and (out.name in ("", ".", "..") or (out.suffix and os.path.isdir(out))):  # compare's out is a stem
        raise ConfigError(f"out={args.out!r} is a folder; give a file name in it (e.g. out={out / 'result'})")
    if out is not None:
        check_name_length(str(out.with_suffix(".json")) if schema is CompareArgs else args.out)
    if args.grid:  # None or "": each sampler's default_grid
        parse_grid(args.grid)
    return args, parse_device(args.device)


def parse_device(name: str) -> torch.device:
    """cpu, cuda or cuda:N, and only where there is one."""
    device = torch.device(name) if name in ("cpu", "cuda") or re.fullmatch(r"cuda:\d{1,4}", name) else None
    if device is None:
        raise ConfigError(f"device='{name}' is not one of: cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device='{name}' but no CUDA device is available; use device=cpu")
    return device


def load_on(ckpt: str, device: torch.device, n: int, setting: str | None = None):
    """(config, parts) of a checkpoint on ``device``, after checking that a draw of ``n`` samples fits there
    (``setting``: the options that asked for them, as the error names them; default ``n=N``)."""
    cfg, parts = load_run(ckpt)
    check_draw_fits(parts.model, n, tuple(parts.target.shape), device, setting)
    parts.model.to(device)
    return cfg, parts


def for_sampling(parts, args, n: int, generator: torch.Generator) -> tuple[Cond | None, torch.Tensor | None]:
    """(the conditioning samplers get, the labels it samples): labels and guidance for a class-conditional
    model (``args.label`` / ``args.guidance``), a classifier's labels and gradient with ``args.classifier``
    (``flowkit.config.guidance``), nothing for any other."""
    classifier = guide_of(parts, args.classifier, args.classifier_scale) if args.classifier else None
    labels = sampling_labels(n, parts.classes, classifier, args.label, generator)
    return conditioning(parts.classes, labels, args.guidance, classifier), labels


def guide_of(parts, run: str, scale: float):
    """The classifier of run ``run`` that guides ``parts``' model, checked against it."""
    from flowkit.config.guidance import load_classifier

    if not parts.has_score:
        raise ConfigError(f"classifier={run}: classifier guidance moves the score of p_t, which the model gives only "
                          f"for an independent standard-normal source; this run has data.source="
                          f"'{parts.source_name}' and coupling '{parts.coupling_name}'")
    classifier = load_classifier(run, scale, parts.path, tuple(parts.target.shape),
                                 next(parts.model.parameters()).device)
    if parts.classes and classifier.classes != parts.classes:
        raise ConfigError(f"classifier={run} has {classifier.classes} classes, the model {parts.classes}")
    return classifier


def draw(parts, x0: torch.Tensor, spec: str, args, cond: Cond | None, **tolerances: float) -> tuple[torch.Tensor, int]:
    """``Parts.sample`` with a verb's grid and tolerances."""
    return parts.sample(x0, spec, grid=args.grid, cond=cond, **{"rtol": args.rtol, "atol": args.atol, **tolerances})


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@ReportOutOfMemory("n")
def sample(tokens: list[str]) -> dict[str, Any]:
    args, device = parse_args(SampleArgs, tokens)
    out = Path(args.out)
    if out.suffix not in (".pt", ".npy", ".png"):
        raise ConfigError(f"out='{args.out}': unsupported suffix '{out.suffix}'; valid: .pt, .npy, .png")
    parse_sampler(args.solver)
    cfg, parts = load_on(args.ckpt, device, args.n)
    generator = torch.Generator().manual_seed(args.seed)
    x0 = parts.source.sample(args.n, generator).to(device)
    cond, labels = for_sampling(parts, args, args.n, generator)
    start = time.perf_counter()
    x1, nfe = draw(parts, x0, args.solver, args, cond)
    synchronize(device)
    seconds = time.perf_counter() - start
    x1 = x1.cpu()
    data = parts.target.decode(x1)  # latent codes as data; anything else as it is
    check_finite_output(data, "samples", out)
    if out.suffix == ".png":
        write_atomically(out, lambda p: save_samples(p, data, None, f"{cfg['name']} ({args.solver}, NFE {nfe})"))
    else:
        save_array(out, data)
    result = {"out": str(out), "n": args.n, "solver": args.solver, "nfe": nfe, "seconds": seconds}
    if labels is not None:  # which class each sample was asked for, beside the samples
        result["labels"] = str(out.with_name(f"{out.stem}_labels.npy"))
        write_atomically(Path(result["labels"]), lambda p: np.save(p, labels.numpy()))
        result["label_accuracy"] = label_accuracy(parts.target, x1, labels)
    return result


@ReportOutOfMemory("n, repeats or nll_n")
def evaluate(tokens: list[str]) -> dict[str, Any]:
    """The target's metric over ``repeats`` draws, its further metrics, straightness and NLL (methods whose
    network is a velocity field), bits/dim (quantised data) and label accuracy (class-conditional models)."""
    args, device = parse_args(EvalArgs, tokens)
    parse_sampler(args.solver)
    draws = args.n * args.repeats
    cfg, parts = load_on(args.ckpt, device, max(draws, args.nll_n),
                         f"n={args.n} with repeats={args.repeats}" if draws >= args.nll_n else f"nll_n={args.nll_n}")
    target, method = parts.target, parts.method
    generator = torch.Generator().manual_seed(args.seed)
    result: dict[str, Any] = {"ckpt": args.ckpt, "solver": args.solver}
    x0 = parts.source.sample(draws, generator).to(device)
    cond, labels = for_sampling(parts, args, draws, generator)
    x1, result["nfe"] = sample_reporting(parts, x0, args.solver, f"sampling {draws:,} points", grid=args.grid,
                                         cond=cond, rtol=args.rtol, atol=args.atol)
    x1 = x1.cpu()
    if labels is not None:
        result["label_accuracy"] = label_accuracy(target, x1, labels)
    refs = [target.reference(args.n, generator) for _ in range(args.repeats)]
    metric = target.metric.lower()
    result["metric"] = target.metric
    result[metric], result[f"{metric}_std"] = score(target, x1, refs)
    if torch.isfinite(x1).all():
        result.update(target.metrics(x1[: args.n], refs[0]))
    if method.ode:  # straightness and the change of variables need a velocity field
        velocity = Predictor.of(method, parts.model, parts.path).velocity_field(cond)
        # along well-resolved paths: dopri5 unless a fixed-step sampler was asked for
        paths = path_solver(args.solver, args.rtol, args.atol)
        result["straightness"] = straightness_along_paths(velocity, x0[: args.n], paths)
        result["straightness_along"] = args.solver if "steps" in paths else "dopri5"
        held_out = target.encode(target.reference(args.nll_n, generator)[: args.nll_n]).to(device)  # as codes
        # a class-conditional model's likelihood is that of its unconditional (null-class) branch
        unconditional = Predictor.of(method, parts.model, parts.path).velocity_field(None)
        logp, _ = log_likelihood(unconditional, held_out, rtol=args.rtol, atol=args.atol, generator=generator)
        result["nll"] = float(-logp.mean())
        if target.bin_width:
            dims = int(torch.tensor(target.shape).prod())
            result["bits_per_dim"] = float(bits_per_dim(logp, dims, bin_width=target.bin_width).mean())
    if args.out:
        write_atomically(Path(args.out), lambda p: p.write_text(json.dumps(result, indent=2)))
    return result


def save_array(out: Path, x: torch.Tensor) -> None:
    """``x`` to a .pt, .npy (or, for ``sample``, .png) file, atomically."""
    if out.suffix == ".pt":
        write_atomically(out, lambda p: torch.save(x, p))
    elif out.suffix == ".npy":
        write_atomically(out, lambda p: np.save(p, x.numpy()))
    else:
        raise ConfigError(f"out='{out}': unsupported suffix '{out.suffix}'; valid: .pt, .npy")


@ReportOutOfMemory("the size of in=")
def invert(tokens: list[str]) -> dict[str, Any]:
    """Data -> source by a deterministic sampler run backwards (``Parts.invert``), then the round trip: the source
    points sampled forward again with the same sampler and grid, and their distance to the data."""
    tokens = [f"input={t[3:]}" if t.startswith("in=") else t for t in tokens]
    args, device = parse_args(InvertArgs, tokens)
    out = Path(args.out)
    if out.suffix not in (".pt", ".npy"):
        raise ConfigError(f"out='{args.out}': unsupported suffix '{out.suffix}'; valid: .pt, .npy")
    data = Rows(load_array(args.input, "in"), f"in={args.input!r}").data
    cfg, parts = load_on(args.ckpt, device, data.shape[0])
    if parts.target.encoded_by:  # data in, inverted from its codes (the posterior's mean)
        data = encode_input(parts, data, args.input)
    if tuple(data.shape[1:]) != tuple(parts.target.shape):
        raise ConfigError(f"in={args.input!r}: points of shape {tuple(data.shape[1:])}; this model's data are "
                          f"{tuple(parts.target.shape)}")
    if parts.classes and args.label < 0:
        raise ConfigError(f"this model is class-conditional ({parts.classes} classes): give the class of the points, "
                          f"label=0..{parts.classes - 1}")
    cond, _ = for_sampling(parts, args, data.shape[0], torch.Generator().manual_seed(0))
    x1 = data.to(device)
    start = time.perf_counter()
    z, nfe = parts.invert(x1, args.solver, grid=args.grid, cond=cond, rtol=args.rtol, atol=args.atol)
    synchronize(device)
    seconds = time.perf_counter() - start
    back, nfe_back = draw(parts, z, args.solver, args, cond)
    check_finite_output(z, "source points", out)
    save_array(out, z.cpu())
    error = (back - x1).flatten(1).norm(dim=1)
    return {"out": str(out), "n": data.shape[0], "solver": args.solver, "grid": grid_of(args.solver, args.grid),
            "nfe": nfe,
            "seconds": seconds, "nfe_generate": nfe_back, "round_trip_rms": float(error.pow(2).mean().sqrt()),
            "round_trip_max": float(error.max()), "data_rms": float(x1.flatten(1).norm(dim=1).pow(2).mean().sqrt())}


def encode_input(parts, data: torch.Tensor, where: str) -> torch.Tensor:
    """Data given to a latent run, as its codes; data the encoder cannot take is one line."""
    try:
        return parts.target.encode(data)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"in={where!r}: points of shape {tuple(data.shape[1:])} cannot be encoded by "
                          f"data.encoder={parts.target.encoded_by} ({' '.join(str(exc).split())[:160]})") from None


def compare_runs(ckpts: list[str], solvers: list[str], args: Any, device: torch.device) -> dict[str, Any]:
    """Every model with every sampler it supports, on the same noise (and labels): rows of NFE, the target's
    metric (mean and std over ``repeats`` draws of ``n``, with the metric's floor: the training summary's draws,
    ``flowkit.training.evaluate.evaluation_draws``), the RMS distance to a tight dopri5 solution (models with a
    velocity field, deterministic samplers) and time; the samplers a model does not support are listed in
    ``skipped`` with the reason. ``args`` holds n, repeats, seed, grid, rtol, atol, reference_tol, label and
    guidance (``CompareArgs``)."""
    names = [parse_sampler(spec)[0] for spec in solvers]
    total = args.n * args.repeats
    loaded = [(ckpt, *load_on(ckpt, device, total, f"n={args.n} with repeats={args.repeats}")) for ckpt in ckpts]
    shapes = {tuple(parts.target.shape) for _, _, parts in loaded}
    if len(shapes) > 1:
        raise ConfigError(f"checkpoints have different data shapes {sorted(shapes)}; compare needs one")
    first = loaded[0][2]
    try:  # the same noise for every model
        x0, refs, (floor, floor_std) = evaluation_draws(first, args.n, args.repeats, args.seed, device)
        note = None
    except NeedsData as exc:  # the data is gone: NFE, time and the distance to dopri5 need none of it
        x0 = first.source.sample(total, torch.Generator().manual_seed(args.seed)).to(device)
        refs, floor, floor_std, note = None, None, None, f"no metric: {exc}"
    rows, skipped = [], []
    for ckpt, cfg, parts in loaded:
        cond, _ = for_sampling(parts, args, total, torch.Generator().manual_seed(args.seed + 2))  # the summary's labels
        exact = (draw(parts, x0, "dopri5", args, cond, rtol=args.reference_tol, atol=args.reference_tol)[0]
                 if parts.method.ode else None)
        for spec, name in zip(solvers, names):
            reason = why_not(parts.method, parts.method_name, name)
            stochastic = reason is None and parts.is_stochastic(spec)
            if stochastic and not parts.has_score:  # the sampler is built once more only to word the reason
                reason = parts.stochastic_fault(spec)
            if reason:
                skipped.append(f"{cfg['name']} ({ckpt}): {spec}: {reason}")
                continue
            synchronize(device)
            start = time.perf_counter()
            x1, nfe = draw(parts, x0, spec, args, cond)
            synchronize(device)
            seconds = time.perf_counter() - start
            value, std = (None, None) if refs is None else score(parts.target, x1, refs)
            # a stochastic sampler draws other points of the same distribution: no distance to the ODE's map
            deterministic = exact is not None and not stochastic
            error = float((x1 - exact).flatten(1).pow(2).sum(1).mean().sqrt()) if deterministic else float("nan")
            rows.append({"model": ckpt, "name": cfg["name"], "solver": spec, "grid": grid_of(spec, args.grid),
                         "nfe": nfe,
                         "metric": "none" if refs is None else parts.target.metric,
                         "value": value, "std": std, "error": error, "seconds": seconds})
    return {"rows": rows, "skipped": skipped, "n": args.n, "repeats": args.repeats, "floor": floor,
            "floor_std": floor_std, "device": str(device), "reference_tol": args.reference_tol, "grid": args.grid,
            "note": note}


@ReportOutOfMemory("n")
def compare(tokens: list[str]) -> dict[str, Any]:
    """``compare_runs`` on the checkpoints and samplers of the command line; writes ``<out>.json`` and ``<out>.png``
    (quality against NFE, one curve per sampler family)."""
    args, device = parse_args(CompareArgs, tokens)
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    ckpts = args.ckpt.split(",")
    result = compare_runs(ckpts, solvers, args, device)
    first = Path(ckpts[0])
    out = Path(args.out) if args.out else (first if first.is_dir() else first.parent) / "compare"
    write_atomically(out.with_suffix(".json"), lambda p: p.write_text(json.dumps(result, indent=2)))
    write_atomically(out.with_suffix(".png"), lambda p: plot_quality_vs_nfe(p, result["rows"]))
    result["files"] = [str(out.with_suffix(".json")), str(out.with_suffix(".png"))]
    return result


def encode(tokens: list[str]) -> dict[str, Any]:
    """``flowkit encode``: a finite dataset (images, digits, an array) written once into shards (``write_shards``),
    through ``data.encoder`` when it names one; training then reads ``data.target=shards:OUT`` and never runs the
    encoder on its data."""
    from flowkit.data.encoders import build_encoder
    from flowkit.data.latent import Coder, coding_device
    from flowkit.data.pair import build_pair
    from flowkit.data.shards import write_shards

    args = apply_overrides(OmegaConf.structured(EncodeArgs), tokens)
    if not args.out:
        raise ConfigError("out=DIR is required: the folder the shards are written to")
    check_ranges(args, ENCODE_RANGES)
    device = coding_device() if args.device == "auto" else parse_device(args.device)
    d = args.data
    _, dataset = build_pair("gaussian", d.target, d.path, d.resolution, d.flip and not d.encoder, d.features,
                            prepare=False)
    coder = Coder(build_encoder(d.encoder, dataset.shape), device=device) if d.encoder else None
    job = {"data": {"target": d.target, "path": d.path, "resolution": d.resolution, "flip": d.flip,
                    "features": d.features},
           "encoder": d.encoder, "shard_mb": args.shard_mb, "reference": args.reference, "dtype": args.dtype,
           "seed": args.seed}
    index = write_shards(dataset, Path(args.out), job, coder, flip=d.flip, shard_mb=args.shard_mb,
                         reference=args.reference, dtype=args.dtype, seed=args.seed)
    return {"out": args.out, "count": index["count"], "shards": len(index["shards"]), "shape": index["shape"],
            "views": index["views"], "dtype": index["dtype"], "encoder": index["encoder"],
            "data_shape": index["data_shape"]}
