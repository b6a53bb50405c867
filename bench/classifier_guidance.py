"""Classifier guidance (Dhariwal & Nichol 2021): an unconditional model steered by a classifier of noisy data.

Trains an unconditional flow and a noisy-data classifier on the same path (method `noisy_classifier`), then
samples every class in turn (n / classes samples each) at classifier scales s and reports the share of
samples in the requested class (the nearest mode on 8gaussians; the fixed digits classifier of
the README's Benchmarks on digits, not the guiding one) and the quality of the guided samples against the target
(W2 / FD: guidance trades diversity for fidelity). s = 0 is the unconditional model (share ~ 1 / classes).

    digits_vp   recipe digits_vp (VP path, UNet) + recipe digits_vp_classifier
    rectified   recipe rectified (8gaussians) + recipe noisy_classifier

    python bench/classifier_guidance.py [--scales 0 0.5 1 2 4 8] [--solver dpm++2m:20] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from common import report, trained
from flowkit.config.build import load_run
from flowkit.conditioning import conditioning
from flowkit.config.guidance import load_classifier

TASKS = {"digits_vp": (["recipe=digits_vp"], ["recipe=digits_vp_classifier"]),
         "rectified": (["recipe=rectified"], ["recipe=noisy_classifier"])}


@torch.no_grad()
def sweep(model: Path, classifier: Path, scales: list[float], n: int, solver: str, grid: str) -> list[dict]:
    _, parts = load_run(model)
    x0 = parts.source.sample(n, torch.Generator().manual_seed(0))
    reference = parts.target.reference(n, torch.Generator().manual_seed(1))
    rows = []
    for scale in scales:
        guide = load_classifier(classifier, scale, parts.path, tuple(parts.target.shape))
        labels = torch.arange(n) % guide.classes
        x1, nfe = parts.sample(x0, solver, grid=grid, cond=conditioning(0, labels, None, guide))
        share = float((parts.target.classify(x1) == labels).float().mean())
        value = parts.target.quality(x1, reference)
        rows.append({"scale": scale, "share": share, "metric": parts.target.metric, "value": value, "nfe": nfe})
        print(model.parent.name, scale, f"share {share:.3f}", f"{parts.target.metric} {value:.4f}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=float, nargs="+", default=[0, 0.5, 1, 2, 4, 8])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--solver", default="dpm++2m:20")
    parser.add_argument("--grid", default="logsnr")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs; given again, re-used")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results, lines = {}, [f"Classifier guidance of unconditional models, {args.solver} on the {args.grid} grid, "
                          f"{args.n} samples (every class in turn), CPU", ""]
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for task in args.tasks:
            model_args, classifier_args = TASKS[task]
            model, _ = trained(work / task, *model_args)
            classifier, summary = trained(work / f"{task}_classifier", *classifier_args)
            rows = sweep(model, classifier, args.scales, args.n, args.solver, args.grid)
            results[task] = {"model": model_args, "classifier": classifier_args,
                             "classifier_accuracy": summary["classifier_accuracy"], "rows": rows}
            accuracy = ", ".join(f"{k} {v:.1%}" for k, v in summary["classifier_accuracy"].items())
            metric = rows[0]["metric"]
            lines += [f"**{task}** (classifier accuracy on noisy data: {accuracy})", "",
                      f"| scale s | share in the requested class | {metric} |", "|---|---|---|"]
            lines += [f"| {r['scale']:g} | {r['share']:.1%} | {r['value']:.3f} |" for r in rows] + [""]
    report(args.out, "classifier_guidance", {"solver": args.solver, "grid": args.grid, "n": args.n,
                                             "tasks": results}, lines)


if __name__ == "__main__":
    main()
