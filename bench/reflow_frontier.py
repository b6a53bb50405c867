"""Reflow frontier: teacher (rectified) -> 2-rectified flow -> distilled one-step generator, per task.

Everything goes through `flowkit train` (recipes rectified, reflow, reflow_distill) with the same
MLP and batch; each run's summary gives W2 (mean over 5 draws of 2,000 points), NFE and the
straightness of its dopri5 paths. The paired error E||G(z) - Phi(z)||^2 compares the distilled
generator G with the 2-rectified flow's own ODE map Phi on the same noise (README, Benchmarks).

    python bench/reflow_frontier.py [--steps 10000] [--tasks gaussian:8gaussians 8gaussians:moons]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import paired_error, torchcfm_data, trained, w2_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--tasks", nargs="+", default=["gaussian:8gaussians", "8gaussians:moons"])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    compare = "eval.compare=[euler:1,euler:2,euler:4]"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            source, target = task.split(":")
            data = torchcfm_data(task)  # moons(even=true): the layout its README numbers were measured on
            teacher, t = trained(Path(tmp) / f"{task}-teacher", "recipe=rectified", *data, compare,
                                 f"trainer.max_steps={args.steps}")
            flow, r = trained(Path(tmp) / f"{task}-reflow", "recipe=reflow", *data, compare, f"coupling.teacher={teacher}",
                              f"trainer.max_steps={args.steps}")
            student, d = trained(Path(tmp) / f"{task}-distill", "recipe=reflow_distill", *data,
                                 f"coupling.teacher={flow}", f"trainer.max_steps={args.steps // 2}")
            results.append({
                "task": f"{source} -> {target}", "floor": t["floor"],
                "teacher": {"dopri5": w2_of(t, "dopri5"), "nfe": t["rows"][0]["nfe"], "euler:1": w2_of(t, "euler:1"),
                            "euler:2": w2_of(t, "euler:2"), "euler:4": w2_of(t, "euler:4"),
                            "straightness": t["straightness"], "train_s": t["train_seconds"]},
                "reflow": {"dopri5": w2_of(r, "dopri5"), "nfe": r["rows"][0]["nfe"], "euler:1": w2_of(r, "euler:1"),
                           "euler:2": w2_of(r, "euler:2"), "euler:4": w2_of(r, "euler:4"),
                           "straightness": r["straightness"], "train_s": r["train_seconds"]},
                "distilled": {"euler:1": w2_of(d, "euler:1"), "train_s": d["train_seconds"],
                              "paired_error": paired_error(student, flow)},
            })
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "reflow_frontier.json").write_text(json.dumps({"steps": args.steps, "results": results}, indent=2))
    lines = [f"Reflow frontier, CPU (2 cores); teacher and 2-rectified {args.steps} steps, distillation {args.steps // 2}",
             "", "| task | model | NFE | W2 | straightness | train (s) |", "|---|---|---|---|---|---|"]
    for res in results:
        t, r, d = res["teacher"], res["reflow"], res["distilled"]
        rows = [("teacher (1-rectified), dopri5", t["nfe"], t["dopri5"], t["straightness"], t["train_s"]),
                ("teacher, Euler", 1, t["euler:1"], None, None), ("teacher, Euler", 2, t["euler:2"], None, None),
                ("teacher, Euler", 4, t["euler:4"], None, None),
                ("2-rectified, dopri5", r["nfe"], r["dopri5"], r["straightness"], r["train_s"]),
                ("2-rectified, Euler", 1, r["euler:1"], None, None), ("2-rectified, Euler", 2, r["euler:2"], None, None),
                ("distilled 2-rectified", 1, d["euler:1"], None, d["train_s"])]
        for name, nfe, w, s, sec in rows:
            lines.append(f"| {res['task']} (floor {res['floor']:.3f}) | {name} | {nfe} | {w:.3f} | "
                         f"{'' if s is None else f'{s:.4f}'} | {'' if sec is None else f'{sec:.0f}'} |")
        lines.append(f"| {res['task']} | distilled: paired error E\\|\\|G(z) - Phi(z)\\|\\|^2 vs the 2-rectified map | 1 | "
                     f"{d['paired_error']:.4f} | | |")
    (args.out / "reflow_frontier.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
