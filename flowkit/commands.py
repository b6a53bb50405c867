"""``flowkit sample``, ``eval`` and ``compare``: checkpoints in, samples and tables out.

Arguments are ``key=value`` tokens checked against the small schemas below (the same parser as
recipes). Every checkpoint is loaded with ``weights_only=True``; sampling uses its EMA weights and
its method's own sampler, so distilled students compare like any model.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

from flowkit.checkpoint import load_model, write_atomically
from flowkit.config import apply_overrides
from flowkit.errors import ConfigError
from flowkit.conditioning import conditioned, labels_for
from flowkit.evaluate import defines_ode, label_accuracy, samples_with, mean_std, solver_options, straightness_along_paths
from flowkit.likelihood import bits_per_dim, log_likelihood
from flowkit.metrics import frechet_distance, mmd2, w2
from flowkit.plots import plot_quality_vs_nfe, save_samples
from flowkit.sampling import parse_solver


@dataclass
class GuidanceArgs:
    """What every sampling verb takes for class-conditional models (``flowkit.conditioning``)."""

    label: int = -1  # class-conditional models: the class to sample, or -1 for uniformly random classes
    guidance: Optional[float] = None  # classifier-free guidance weight w (None: 1, the conditional model)


@dataclass
class SampleArgs(GuidanceArgs):
    ckpt: str = ""
    n: int = 10_000
    solver: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    out: str = "samples.pt"
    seed: int = 0
    device: str = "cpu"


@dataclass
class EvalArgs(GuidanceArgs):
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
class CompareArgs(GuidanceArgs):
    ckpt: str = ""  # one checkpoint or run dir, or several separated by commas
    solvers: str = "euler:1,euler:4,midpoint:4,rk4:4,dopri5"
    n: int = 2000
    rtol: float = 1e-5
    atol: float = 1e-5
    reference_tol: float = 1e-7  # dopri5 tolerance of the reference solution the error is measured against
    seed: int = 0
    device: str = "cpu"
    out: str = "compare"  # writes <out>.json and <out>.png


def parse_args(schema: type, tokens: list[str]):
    args = apply_overrides(OmegaConf.structured(schema), tokens)
    if not args.ckpt:
        raise ConfigError("ckpt=... is required (a run directory or a .ckpt file)")
    if args.n < 2:
        raise ConfigError(f"n={args.n} is out of range; expected >= 2")
    device = torch.device(args.device) if args.device in ("cpu", "cuda") or args.device.startswith("cuda:") else None
    if device is None:
        raise ConfigError(f"device='{args.device}' is not one of: cpu, cuda, cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device='{args.device}' but no CUDA device is available; use device=cpu")
    return args, device


def load_on(ckpt: str, device: torch.device):
    cfg, parts = load_model(ckpt)
    parts.model.to(device)
    return cfg, parts


def for_sampling(parts, args, n: int, generator: torch.Generator) -> tuple[torch.nn.Module, torch.Tensor | None]:
    """(the network samplers see, the labels it samples): a class-conditional model is wrapped in
    classifier-free guidance for ``args.label`` / ``args.guidance``; any other model is used as it is."""
    if not parts.classes:
        if args.label != -1:
            raise ConfigError(f"label={args.label}: this model was trained without labels (cond.labels=false)")
        return conditioned(parts.model, 0, None, args.guidance), None
    labels = labels_for(n, parts.classes, args.label, generator)
    return conditioned(parts.model, parts.classes, labels, args.guidance), labels


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sample(tokens: list[str]) -> dict[str, Any]:
    args, device = parse_args(SampleArgs, tokens)
    out = Path(args.out)
    if out.suffix not in (".pt", ".npy", ".png"):
        raise ConfigError(f"out='{args.out}': unsupported suffix '{out.suffix}'; valid: .pt, .npy, .png")
    options = solver_options(args.solver, args.rtol, args.atol)
    cfg, parts = load_on(args.ckpt, device)
    generator = torch.Generator().manual_seed(args.seed)
    x0 = parts.source.sample(args.n, generator).to(device)
    model, labels = for_sampling(parts, args, args.n, generator)
    start = time.perf_counter()
    x1, nfe = parts.method.sample(model, x0, **options)
    synchronize(device)
    seconds = time.perf_counter() - start
    x1 = x1.cpu()
    if out.suffix == ".pt":
        write_atomically(out, lambda p: torch.save(x1, p))
    elif out.suffix == ".npy":
        write_atomically(out, lambda p: np.save(p, x1.numpy()))
    else:
        write_atomically(out, lambda p: save_samples(p, x1, None, f"{cfg['name']} ({args.solver}, NFE {nfe})"))
    result = {"out": str(out), "n": args.n, "solver": args.solver, "nfe": nfe, "seconds": seconds}
    if labels is not None:  # which class each sample was asked for, beside the samples
        result["labels"] = str(out.with_name(f"{out.stem}_labels.npy"))
        write_atomically(Path(result["labels"]), lambda p: np.save(p, labels.numpy()))
        result["label_accuracy"] = label_accuracy(cfg, x1, labels)
    return result


def reference_set(cfg: dict[str, Any], parts, n: int, generator: torch.Generator) -> torch.Tensor:
    """Held-out target samples: the digits test split, or fresh draws from the target."""
    if cfg["data"]["target"] == "digits" and not cfg["data"]["path"]:
        from flowkit.data import digits

        return digits("test").data
    return parts.target.sample(n, generator)


def quality_metric(data_shape: tuple[int, ...]) -> str:
    """W2 for 2-D data, FD in the digits classifier's features for 8x8 images, '-' for anything else."""
    return {(2,): "W2", (1, 8, 8): "FD"}.get(tuple(data_shape), "-")


def quality(samples: torch.Tensor, reference: torch.Tensor) -> tuple[str, float]:
    """(quality_metric, its value) of ``samples`` against ``reference``."""
    metric = quality_metric(samples.shape[1:])
    if metric == "-" or not torch.isfinite(samples).all():
        return metric, float("nan")
    if metric == "W2":
        return "W2", w2(samples, reference)
    from flowkit.digits_features import digits_classifier

    net, _ = digits_classifier()
    return "FD", frechet_distance(net.features(samples.clamp(-1, 1)), net.features(reference))


def evaluate(tokens: list[str]) -> dict[str, Any]:
    args, device = parse_args(EvalArgs, tokens)
    options = solver_options(args.solver, args.rtol, args.atol)
    cfg, parts = load_on(args.ckpt, device)
    generator = torch.Generator().manual_seed(args.seed)
    method = parts.method
    result: dict[str, Any] = {"ckpt": args.ckpt, "solver": args.solver}
    x0 = parts.source.sample(args.n * args.repeats, generator).to(device)
    model, labels = for_sampling(parts, args, args.n * args.repeats, generator)
    x1, result["nfe"] = method.sample(model, x0, **options)
    x1 = x1.cpu()
    if labels is not None:
        result["label_accuracy"] = label_accuracy(cfg, x1, labels)
    chunks = x1.split(args.n)
    refs = [reference_set(cfg, parts, args.n, generator) for _ in range(args.repeats)]
    name = quality_metric(x1.shape[1:])
    if name != "-":
        result[name.lower()], result[f"{name.lower()}_std"] = mean_std([quality(c, r)[1] for c, r in zip(chunks, refs)])
    if name == "W2":
        result["mmd2"] = mmd2(chunks[0], refs[0])
        # along well-resolved paths: dopri5 unless a fixed-step grid was asked for
        paths = options if options.get("steps") else {"method": "dopri5", "rtol": args.rtol, "atol": args.atol}
        if defines_ode(method):
            result["straightness"] = straightness_along_paths(model, x0[: args.n], paths)
    if name == "FD":
        from flowkit.digits_features import digits_classifier

        net, accuracy = digits_classifier()
        counts = torch.bincount(net(chunks[0].clamp(-1, 1)).argmax(1), minlength=10).double()
        p = counts / counts.sum()
        result["classifier_accuracy"] = accuracy
        result["class_balance"] = float(-(p[p > 0] * p[p > 0].log()).sum() / math.log(10))  # 1 = uniform
    if defines_ode(method):  # the change of variables needs a velocity field
        held_out = reference_set(cfg, parts, args.nll_n, generator)[: args.nll_n].to(device)
        # a class-conditional model's likelihood is that of its unconditional (null-class) branch
        logp, _ = log_likelihood(parts.model, held_out, rtol=args.rtol, atol=args.atol, generator=generator)
        result["nll"] = float(-logp.mean())
        if name == "FD":
            result["bits_per_dim"] = float(bits_per_dim(logp, 64, bin_width=2 / 16).mean())
    if args.out:
        write_atomically(Path(args.out), lambda p: p.write_text(json.dumps(result, indent=2)))
    return result


def compare(tokens: list[str]) -> dict[str, Any]:
    args, device = parse_args(CompareArgs, tokens)
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    for spec in solvers:
        parse_solver(spec)
    loaded = [(ckpt, *load_on(ckpt, device)) for ckpt in args.ckpt.split(",")]
    shapes = {tuple(parts.target.shape) for _, _, parts in loaded}
    if len(shapes) > 1:
        raise ConfigError(f"checkpoints have different data shapes {sorted(shapes)}; compare needs one")
    generator = torch.Generator().manual_seed(args.seed)
    first_cfg, first_parts = loaded[0][1], loaded[0][2]
    x0 = first_parts.source.sample(args.n, generator).to(device)  # the same noise for every model
    reference = reference_set(first_cfg, first_parts, args.n, generator)
    rows, skipped = [], []
    for ckpt, cfg, parts in loaded:
        ode = defines_ode(parts.method)
        model, _ = for_sampling(parts, args, args.n, torch.Generator().manual_seed(args.seed + 1))  # same labels
        exact = parts.method.sample(model, x0, method="dopri5", rtol=args.reference_tol,
                                    atol=args.reference_tol)[0] if ode else None
        for spec in solvers:
            if not samples_with(parts.method, spec):
                skipped.append(f"{cfg['name']} ({ckpt}): {spec}, a consistency model samples only with euler:N")
                continue
            synchronize(device)
            start = time.perf_counter()
            x1, nfe = parts.method.sample(model, x0, **solver_options(spec, args.rtol, args.atol))
            synchronize(device)
            seconds = time.perf_counter() - start
            metric, value = quality(x1.cpu(), reference)
            error = float((x1 - exact).flatten(1).pow(2).sum(1).mean().sqrt()) if ode else float("nan")
            rows.append({"model": ckpt, "name": cfg["name"], "solver": spec, "nfe": nfe, "metric": metric,
                         "value": value, "error": error, "seconds": seconds})
    result = {"rows": rows, "skipped": skipped, "n": args.n, "device": str(device), "reference_tol": args.reference_tol}
    out = Path(args.out)
    write_atomically(out.with_suffix(".json"), lambda p: p.write_text(json.dumps(result, indent=2)))
    write_atomically(out.with_suffix(".png"), lambda p: plot_quality_vs_nfe(p, rows))
    result["files"] = [str(out.with_suffix(".json")), str(out.with_suffix(".png"))]
    return result
