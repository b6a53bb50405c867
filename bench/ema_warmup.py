"""The EMA warm-up (optim.ema_warmup): W2 of the EMA weights with and without it, by run length.

Without the warm-up, the EMA of decay d = 0.999 starts from the first weights and keeps d**T of them after T
steps (74% at 300 steps, 14% at 2,000), so a short run samples from a mostly untrained network. With it, the
decay is min(d, (1 + step) / (10 + step)). Each cell is the mean over seeds of `flowkit train` W2 (dopri5,
means over 5 draws of 2,000 points): recipe rectified (gaussian -> 8gaussians) at 300, 2,000 and 10,000 steps,
and recipe meanflow (its 1-step sampler) at 300 steps.

    python bench/ema_warmup.py [--work DIR] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import report, trained, w2_of

RUNS = [("rectified", "dopri5", 300), ("meanflow", "meanflow:1", 300), ("rectified", "dopri5", 2000),
        ("rectified", "dopri5", 10_000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs; given again, finished runs are re-used")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        for recipe, solver, steps in RUNS:
            row = {"recipe": recipe, "solver": solver, "steps": steps}
            for warmup in ("false", "true"):
                values = []
                for seed in args.seeds:
                    _, summary = trained(work / f"{recipe}-{steps}-{warmup}-{seed}", f"recipe={recipe}",
                                         f"trainer.max_steps={steps}", f"optim.ema_warmup={warmup}", f"seed={seed}",
                                         f"eval.solver={solver}", "eval.compare=[]")
                    values.append(w2_of(summary, solver))
                row[f"warmup_{warmup}"] = values
            rows.append(row)
            write(args, rows)


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    lines = [f"EMA warm-up, CPU: W2 of the EMA weights (mean ± std over seeds {', '.join(map(str, args.seeds))}; "
             f"optim.ema_decay 0.999)", "",
             "| recipe | sampler | steps | W2 without warm-up | W2 with warm-up |", "|---|---|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['solver']} | {r['steps']} | {spread(r['warmup_false'])} | "
              f"{spread(r['warmup_true'])} |" for r in rows]
    report(args.out, "ema_warmup", {"seeds": args.seeds, "rows": rows}, lines)


if __name__ == "__main__":
    main()
