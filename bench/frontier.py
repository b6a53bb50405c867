"""The distillation frontier (BENCHMARKS.md) for the one-step methods: MeanFlow, consistency
distillation (CD) and consistency training (CT), against a rectified teacher, per 2-D task.

Every run is a `flowkit train` with the same MLP, batch and evaluation: the teacher (recipe rectified)
at dopri5 and Euler 1/2/4, MeanFlow trained from scratch for the teacher's step budget, CD of that
teacher, and CT from scratch. W2 are means over 5 draws of 2,000 points on the same evaluation noise.
Paired error E||G(z) - Phi(z)||^2 is each 1-step student against the teacher's dopri5 map on the same
noise (with independent pairs all of them approximate that one map).

    python bench/frontier.py [--steps 10000] [--methods meanflow cd ct]
                             [--tasks gaussian:8gaussians 8gaussians:moons]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import paired_error, trained, w2_of

STUDENT_SOLVERS = ["euler:1", "euler:2", "euler:4"]


def paired(row: dict) -> str:
    return "" if row.get("paired_error") is None else f"{row['paired_error']:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000, help="training steps of the teacher and every student")
    parser.add_argument("--methods", nargs="+", default=["meanflow", "cd", "ct"], choices=["meanflow", "cd", "ct"])
    parser.add_argument("--tasks", nargs="+", default=["gaussian:8gaussians", "8gaussians:moons"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            source, target = task.split(":")
            data = [f"data.source={source}", f"data.target={target}"]
            teacher, t = trained(Path(tmp) / f"{task}-teacher", "recipe=rectified", *data,
                                 "eval.compare=[euler:1,euler:2,euler:4]", f"trainer.max_steps={args.steps}")
            rows = [{"method": "teacher (rectified)", "solver": r["solver"], "nfe": r["nfe"], "w2": r["w2"],
                     "w2_std": r["w2_std"], "train_s": t["train_seconds"]} for r in t["rows"]]
            students = {"meanflow": ["recipe=meanflow", f"trainer.max_steps={args.steps}"],
                        "cd": ["recipe=cd", f"method.teacher={teacher}", f"trainer.max_steps={args.steps}"],
                        "ct": ["recipe=ct", f"trainer.max_steps={args.steps}"]}
            for name in args.methods:
                run, s = trained(Path(tmp) / f"{task}-{name}", *students[name], *data,
                                 f"eval.compare=[{','.join(STUDENT_SOLVERS[1:])}]")
                error = paired_error(run, teacher)
                rows += [{"method": name, "solver": r["solver"], "nfe": r["nfe"], "w2": r["w2"], "w2_std": r["w2_std"],
                          "train_s": s["train_seconds"], "paired_error": error if r["solver"] == "euler:1" else None}
                         for r in s["rows"]]
            dopri5 = w2_of(t, "dopri5")
            for row in rows:
                row["vs_teacher_dopri5"] = row["w2"] / dopri5
            results.append({"task": task, "floor": t["floor"], "teacher_dopri5": dopri5, "rows": rows})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "frontier.json").write_text(json.dumps({"steps": args.steps, "results": results}, indent=2))
    lines = [f"One-step frontier, CPU (2 cores): teacher and every student {args.steps} training steps", ""]
    for res in results:
        lines += [f"**{res['task'].replace(':', ' -> ')}** (W2 floor {res['floor']:.3f})", "",
                  "| method | sampler | NFE | W2 | W2 / teacher dopri5 | paired error | train (s) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['method']} | {r['solver']} | {r['nfe']} | {r['w2']:.3f} ± {r['w2_std']:.3f} | "
                  f"{r['vs_teacher_dopri5']:.2f} | {paired(r)} | "
                  f"{r['train_s']:.0f} |" for r in res["rows"]]
        lines.append("")
    (args.out / "frontier.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
