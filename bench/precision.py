"""bf16 where accuracy allows: the same runs at `trainer.precision=32-true` and `bf16-mixed` (Lightning's
autocast; weights, optimiser state and EMA stay float32, sampling runs in float32), same seed and steps.

Runs: `rectified` (gaussian -> 8gaussians; W2 at dopri5, mean over 5 draws of 2,000 points), `meanflow`
(its forward-mode `torch.func.jvp` under autocast; W2 at 1 NFE) and `digits_rectified` (FD at dopri5 of
2,000 samples to the held-out split, as `bench/digits_frontier.py`). Train time is the fit's wall time.

    python bench/precision.py [--steps 10000] [--digits-steps 4000]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import torch

from common import report, trained, w2_of
from digits_frontier import fd_rows

PRECISIONS = ["32-true", "bf16-mixed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000, help="training steps of the 2-D runs")
    parser.add_argument("--digits-steps", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    runs = [("rectified", args.steps, "W2, dopri5"), ("meanflow", args.steps, "W2, 1 NFE"),
            ("digits_rectified", args.digits_steps, "FD, dopri5")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for recipe, steps, metric in runs:
            for precision in PRECISIONS:
                run, s = trained(Path(tmp) / f"{recipe}-{precision}", f"recipe={recipe}", f"trainer.max_steps={steps}",
                                 f"trainer.precision={precision}",
                                 "eval.compare=[meanflow:1]" if recipe == "meanflow" else "eval.compare=[euler:1]")
                if recipe == "digits_rectified":
                    value = fd_rows(run, recipe, ["dopri5"], 2000, s["train_seconds"])[0]["fd"]
                else:
                    value = w2_of(s, "meanflow:1" if recipe == "meanflow" else "dopri5")
                rows.append({"recipe": recipe, "precision": precision, "steps": steps, "metric": metric,
                             "value": value, "train_s": s["train_seconds"]})
                print(rows[-1], flush=True)
    base = {r["recipe"]: r for r in rows if r["precision"] == "32-true"}
    cpu = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    lines = [f"trainer.precision on {cpu}: `python bench/precision.py`", "",
             "| recipe | steps | precision | metric | value | vs 32-true | train (s) | train time vs 32-true |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['recipe']} | {r['steps']} | {r['precision']} | {r['metric']} | {r['value']:.3f} | "
              f"{r['value'] / base[r['recipe']]['value']:.2f} | {r['train_s']:.0f} | "
              f"{r['train_s'] / base[r['recipe']]['train_s']:.2f} |" for r in rows]
    report(args.out, "precision_cpu", {"device": cpu, "rows": rows}, lines)


if __name__ == "__main__":
    main()
