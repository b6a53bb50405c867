"""Classifier-free guidance (Ho & Salimans 2022): how often guided samples land in the requested class.

Trains class-conditional flows with label dropout (`cond.labels=true`, `cond.drop=0.1`) on 8gaussians
(mode index as label, recipe rectified) and on digits (recipe digits_rectified), then samples every
class at guidance weights w and reports the share of samples in the requested class: the nearest mode
on 8gaussians, the fixed digits classifier of the README's Benchmarks on digits. W2 / FD of the guided samples
against the target are reported beside it (guidance trades diversity for fidelity).

    python bench/guidance.py [--steps-2d 10000] [--steps-digits 4000] [--weights 0 0.5 1 1.5 2 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from common import trained
from flowkit.config.build import load_run
from flowkit.conditioning import Cond, labels_for
from flowkit.training.evaluate import label_accuracy


@torch.no_grad()
def sweep(run: Path, weights: list[float], n: int, solver: str) -> list[dict]:
    cfg, parts = load_run(run)
    x0 = parts.source.sample(n, torch.Generator().manual_seed(0))
    labels = labels_for(n, parts.classes, -1, torch.Generator().manual_seed(1))
    reference = parts.target.reference(n, torch.Generator().manual_seed(2))
    rows = []
    for w in weights:
        x1, nfe = parts.sample(x0, solver, cond=Cond(labels, w, parts.classes))
        rows.append({"w": w, "solver": solver, "nfe": nfe, "accuracy": label_accuracy(parts.target, x1, labels),
                     "metric": parts.target.metric, "value": parts.target.quality(x1, reference)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps-2d", type=int, default=10_000)
    parser.add_argument("--steps-digits", type=int, default=4000)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task, recipe, steps, solver in (("8gaussians", "rectified", args.steps_2d, "dopri5"),
                                            ("digits", "digits_rectified", args.steps_digits, "euler:50")):
            run, summary = trained(Path(tmp) / task, f"recipe={recipe}", "cond.labels=true", "cond.drop=0.1",
                                   f"trainer.max_steps={steps}")
            results[task] = {"steps": steps, "train_s": summary["train_seconds"],
                             "rows": sweep(run, args.weights, args.n, solver)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "guidance.json").write_text(json.dumps(results, indent=2))
    lines = ["Classifier-free guidance, CPU (2 cores): share of samples in the requested class (uniform random "
             f"classes, {args.n} samples, label dropout 0.1)", ""]
    for task, res in results.items():
        lines += [f"**{task}** ({res['steps']} steps, {res['train_s']:.0f} s)", "",
                  "| w | sampler | NFE | in requested class | quality |", "|---|---|---|---|---|"]
        lines += [f"| {r['w']:g} | {r['solver']} | {r['nfe']} | {r['accuracy']:.1%} | {r['metric']} {r['value']:.3f} |"
                  for r in res["rows"]]
        lines.append("")
    (args.out / "guidance.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
