"""One recipe, one task, a few variants side by side: each variant (a set of `flowkit train` overrides; "default"
is the recipe as it is) trained at each seed with the same steps, and its training summary's rows (the recipe's
eval sampler and its eval.compare, W2 mean over 5 draws of 2,000) with the floor. For the README's ablations,
e.g. what stops a one-step student from reaching its teacher.

    python bench/ablation.py --recipe shortcut --task 8gaussians:moons --variants default method.consistency=0.5 coupling=ot
                             [--steps 10000] [--seeds 0] [--work DIR]

A variant of several overrides joins them with commas: "coupling=ot,method.levels=5".
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import report, trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--task", default="gaussian:8gaussians", help="SOURCE:TARGET")
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--work", type=Path, default=None, help="keep (and re-use) the runs here")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    source, target = args.task.split(":")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for variant in args.variants:
            overrides = [] if variant == "default" else variant.split(",")
            per_seed = []
            for seed in args.seeds:
                name = f"{args.recipe}-{args.task}-{variant}-seed{seed}".replace("/", "_")
                _, summary = trained((args.work or Path(scratch)) / name, f"recipe={args.recipe}",
                                     f"data.source={source}", f"data.target={target}", *overrides, f"seed={seed}",
                                     f"trainer.max_steps={args.steps}")
                per_seed.append(summary)
            for i, first in enumerate(per_seed[0]["rows"]):
                values = [s["rows"][i]["value"] for s in per_seed]
                rows.append({"variant": variant, "solver": first["solver"], "nfe": first["nfe"],
                             "w2": statistics.fmean(values),
                             "spread": statistics.stdev(values) if len(values) > 1 else first["std"],
                             "floor": statistics.fmean(s["floor"] for s in per_seed),
                             "train_s": statistics.fmean(s["train_seconds"] for s in per_seed)})
    spread = "std over seeds" if len(args.seeds) > 1 else "std over the 5 evaluation draws"
    lines = [f"Ablation of recipe {args.recipe} on {args.task.replace(':', ' -> ')}, {args.steps} steps, seeds "
             f"{args.seeds}; W2 mean ± {spread}", "", "| variant | sampler | NFE | W2 | W2 / floor | train (s) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['solver']} | {r['nfe']} | {r['w2']:.3f} ± {r['spread']:.3f} | "
              f"{r['w2'] / r['floor']:.2f} | {r['train_s']:.0f} |" for r in rows]
    report(args.out, f"ablation_{args.recipe}_{args.task.replace(':', '_')}",
           {"recipe": args.recipe, "task": args.task, "steps": args.steps, "seeds": args.seeds, "rows": rows}, lines)


if __name__ == "__main__":
    main()
