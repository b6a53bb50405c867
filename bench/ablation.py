"""One recipe, one task, a few variants side by side: each variant (a set of `flowkit train` overrides; "default"
is the recipe as it is) trained at each seed with the same steps, and its training summary's rows (the recipe's
eval sampler and its eval.compare, W2 mean over 5 draws of 2,000) with the floor. For the README's ablations,
e.g. what stops a one-step student from reaching its teacher.

    python bench/ablation.py --recipe shortcut --task 8gaussians:moons --variants default method.consistency=0.5 coupling=ot
                             [--steps 10000] [--seeds 0] [--work DIR] [--teacher rectified [--teacher-steps 10000]]

A variant of several overrides joins them with commas: "coupling=ot,method.levels=5"; its overrides come last, so
a variant can change the step budget too ("trainer.max_steps=30000"). A distiller's ablation names its teacher's
recipe (--teacher): one teacher is trained per seed on the task (the frontier's: --teacher-steps, its seed) and
every variant of that seed distils it; the table then gives each row's W2 over that seed's teacher at dopri5 too,
and the results file's name ends in _of_RECIPE.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import report, trained, w2_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", required=True)
    parser.add_argument("--task", default="gaussian:8gaussians", help="SOURCE:TARGET")
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--work", type=Path, default=None, help="keep (and re-use) the runs here")
    parser.add_argument("--teacher", default=None, help="recipe of the teacher to distil (method.teacher), if any")
    parser.add_argument("--teacher-steps", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    source, target = args.task.split(":")
    data = [f"data.source={source}", f"data.target={target}"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        of = f"_of_{args.teacher}" if args.teacher else ""  # the teacher's recipe in run and results names
        teachers = {seed: trained(work / f"teacher-{args.teacher}-{args.task}-seed{seed}", f"recipe={args.teacher}",
                                  *data, f"seed={seed}", f"trainer.max_steps={args.teacher_steps}")
                    for seed in args.seeds} if args.teacher else {}
        for variant in args.variants:
            overrides = [] if variant == "default" else variant.split(",")
            per_seed = []
            for seed in args.seeds:
                name = f"{args.recipe}{of}-{args.task}-{variant}-seed{seed}".replace("/", "_")
                teacher = [f"method.teacher={teachers[seed][0]}"] if args.teacher else []
                _, summary = trained(work / name, f"recipe={args.recipe}", *data, *teacher, f"seed={seed}",
                                     f"trainer.max_steps={args.steps}", *overrides)
                per_seed.append(summary)
            for i, first in enumerate(per_seed[0]["rows"]):
                values = [s["rows"][i]["value"] for s in per_seed]
                ratios = [s["rows"][i]["value"] / w2_of(teachers[seed][1], "dopri5")
                          for s, seed in zip(per_seed, args.seeds)] if args.teacher else []
                rows.append({"variant": variant, "solver": first["solver"], "nfe": first["nfe"],
                             "w2": statistics.fmean(values),
                             "spread": statistics.stdev(values) if len(values) > 1 else first["std"],
                             "seeds_w2": values,
                             "floor": statistics.fmean(s["floor"] for s in per_seed),
                             "vs_teacher_dopri5": statistics.fmean(ratios) if ratios else None,
                             "train_s": statistics.fmean(s["train_seconds"] for s in per_seed)})
    spread = "std over seeds" if len(args.seeds) > 1 else "std over the 5 evaluation draws"
    of_teacher = f" of a {args.teacher} teacher ({args.teacher_steps} steps per seed)" if args.teacher else ""
    lines = [f"Ablation of recipe {args.recipe}{of_teacher} on {args.task.replace(':', ' -> ')}, {args.steps} steps, "
             f"seeds {args.seeds}; W2 mean ± {spread}", "",
             "| variant | sampler | NFE | W2 | each seed's W2 | W2 / floor | W2 / teacher dopri5 | train (s) |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['solver']} | {r['nfe']:.0f} | {r['w2']:.3f} ± {r['spread']:.3f} | "
              f"{', '.join(f'{v:.3f}' for v in r['seeds_w2'])} | {r['w2'] / r['floor']:.2f} | "
              f"{'' if r['vs_teacher_dopri5'] is None else format(r['vs_teacher_dopri5'], '.2f')} | "
              f"{r['train_s']:.0f} |" for r in rows]
    report(args.out, f"ablation_{args.recipe}_{args.task.replace(':', '_')}{of}",
           {"recipe": args.recipe, "task": args.task, "steps": args.steps, "seeds": args.seeds,
            "teacher": args.teacher, "teacher_steps": args.teacher_steps if args.teacher else None, "rows": rows}, lines)


if __name__ == "__main__":
    main()
