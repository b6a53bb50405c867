"""Progressive distillation frontier on gaussian -> 8gaussians: a rectified teacher at 64 Euler steps,
distilled 64 -> 32 -> 16 -> 8 -> 4 -> 2 -> 1 (Salimans & Ho 2022), each stage a `flowkit train` round.

Each stage's student at N steps is compared with its own teacher at 2N steps (the previous stage, or
the original teacher), and the final 1-step student with the teacher's own 1-step Euler. W2 are
means over 5 draws of 2,000 points on the same evaluation noise (README, Benchmarks).

    python bench/progressive_frontier.py [--teacher-steps 10000] [--stage-steps 2000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from common import flowkit, w2_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teacher-steps", type=int, default=10_000)
    parser.add_argument("--stage-steps", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        flowkit("train", "recipe=rectified", f"trainer.max_steps={args.teacher_steps}", f"run_root={root / 'teacher'}",
                "trainer.enable_progress_bar=false", "eval.compare=[euler:1,euler:64]")
        teacher = next((root / "teacher").iterdir())
        t = json.loads((teacher / "summary.json").read_text())
        flowkit("train", "recipe=progressive", f"method.teacher={teacher}", f"trainer.max_steps={args.stage_steps}",
                f"run_root={root / 'stages'}", "trainer.enable_progress_bar=false")
        stages = sorted((root / "stages").iterdir())
        summaries = [json.loads((s / "summary.json").read_text()) for s in stages]
    rows, previous = [], ("teacher", w2_of(t, "euler:64"), t["train_seconds"])
    for i, s in enumerate(summaries):
        n = 32 >> i
        student = w2_of(s, f"ddim:{n}")
        rows.append({"stage": i + 1, "student_steps": n, "student_w2": student, "teacher_w2_at_2n": previous[1],
                     "ratio": student / previous[1], "train_s": s["train_seconds"]})
        previous = (f"stage {i + 1}", student, s["train_seconds"])
    final = {"student_1_step": rows[-1]["student_w2"], "teacher_1_step_euler": w2_of(t, "euler:1"),
             "teacher_dopri5": w2_of(t, "dopri5"), "teacher_dopri5_nfe": t["rows"][0]["nfe"], "floor": t["floor"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "progressive_frontier.json").write_text(json.dumps({"stages": rows, "final": final}, indent=2))
    lines = [f"Progressive distillation, gaussian -> 8gaussians, CPU (2 cores); teacher {args.teacher_steps} steps, "
             f"{args.stage_steps} steps per stage", "",
             "| stage | student steps | student W2 | its teacher's W2 at 2N steps | ratio | train (s) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['student_steps']} | {r['student_w2']:.3f} | {r['teacher_w2_at_2n']:.3f} | "
              f"{r['ratio']:.2f} | {r['train_s']:.0f} |" for r in rows]
    lines += ["", f"Final 1-step student W2 {final['student_1_step']:.3f}; teacher 1-step Euler "
              f"{final['teacher_1_step_euler']:.3f}; teacher dopri5 {final['teacher_dopri5']:.3f} "
              f"(NFE {final['teacher_dopri5_nfe']}); floor {final['floor']:.3f}."]
    (args.out / "progressive_frontier.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
