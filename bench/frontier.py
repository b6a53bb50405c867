"""The distillation frontier (README, Benchmarks) for the one-step methods: MeanFlow, consistency
distillation (CD), consistency training (CT), their continuous-time forms (sCT, sCD), adversarial distillation (ADD, and the same recipe at
adversarial weight 0: its distillation loss alone), Shortcut models and DMD2, against a rectified teacher, per 2-D
task. DMD2 trains steps / 6 generator steps with 5 fake-flow steps each: the same number of network updates.

Every run is a `flowkit train` with the same MLP, batch and evaluation: the teacher (recipe rectified)
at dopri5 and Euler 1/2/4/8, MeanFlow trained from scratch for the teacher's step budget (its recipe's
minibatch-OT pairs, and the paper's independent pairs: meanflow_indep), CD of that teacher, CT from
scratch (independent pairs, and recipe ct_ot: OT pairs with OT-paired re-noising in multistep sampling), sCT
from scratch and sCD of that teacher (recipes sct, scd), ADD of that teacher; every student with its own sampler at 1/2/4/8 steps (the 8-step point is evaluated after
training with `flowkit.compare`, on the training summary's noise and draws, so runs trained before it was added
are re-used). W2 are means over 5 draws of 2,000 points on the same evaluation noise. Every run (teacher
and students) is trained once per seed in --seeds, each student against its own seed's teacher; each seed's rows
are kept in the results file, so seeds can be added by later calls, and each row of the table is the mean over
the seeds that have it ± their standard deviation (the ratio to the teacher taken per seed; with one seed, ± is
over the evaluation draws).
Paired error E||G(z) - Phi(z)||^2 is each 1-step student against the teacher's dopri5 map on the same
noise (with independent pairs all of them approximate that one map).

    python bench/frontier.py [--work DIR] [--steps 10000] [--seeds 0 1 2] [--methods meanflow meanflow_indep cd ct ct_ot sct scd adversarial adversarial_w0 shortcut dmd2]
                             [--tasks gaussian:8gaussians 8gaussians:moons]

Tasks, seeds and methods not named keep their rows from the previous results file at the same --steps. Results
are written after each seed of each task; `--work DIR` keeps the runs in DIR, and a call given the same DIR again
re-uses the runs it finished there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import flowkit
from common import by_nfe_table, mean_spread, merged_rows, over_seeds, paired_error, report, trained, w2_of

METHODS = ["meanflow", "meanflow_indep", "cd", "ct", "ct_ot", "sct", "scd", "adversarial", "adversarial_w0", "shortcut",
           "dmd2"]
# each student's own few-step sampler: MeanFlow's average-velocity jumps, the shortcut model's step-size jumps,
# predict-and-re-noise for the others
SAMPLER = {name: "meanflow" if name.startswith("meanflow") else "shortcut" if name == "shortcut" else "renoise"
           for name in METHODS}
DMD_FAKE_UPDATES = 5  # dmd2 takes steps / (1 + 5) generator steps: the same number of network updates as the others


def at_steps(run: Path, spec: str) -> dict:
    """One more point of a trained run: ``spec``'s W2 (mean and std over the summary's 5 draws, on its noise)."""
    row = flowkit.compare([run], [spec], reference_tol=1e-3)[0]  # its error column is not used: a loose reference
    return {"solver": row["solver"], "nfe": row["nfe"], "value": row["value"], "std": row["std"]}


def stored_seeds(file: Path, steps: int) -> dict[str, dict[int, dict]]:
    """Per task and seed, the rows (with the floor and the teacher's dopri5 W2) of earlier calls at the same step
    budget; a file written before seeds were kept one by one holds one seed's rows."""
    old = json.loads(file.read_text()) if file.exists() else {}
    if old.get("steps") != steps:
        return {}
    stored = {}
    for res in old.get("results", []):
        if "per_seed" in res:
            stored[res["task"]] = {int(seed): value for seed, value in res["per_seed"].items()}
        elif len(old.get("seeds", [0])) == 1:
            stored[res["task"]] = {old.get("seeds", [0])[0]: {key: res[key] for key in ("rows", "floor",
                                                                                           "teacher_dopri5")}}
    return stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10_000, help="training steps of the teacher and every student")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--tasks", nargs="+", default=["gaussian:8gaussians", "8gaussians:moons"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of every run")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one); "
                        "given again after a stop, the runs finished there are re-used")
    args = parser.parse_args()
    stored = stored_seeds(args.out / "frontier.json", args.steps)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.work or Path(scratch)
        for task in args.tasks:
            for seed in args.seeds:
                rows, teacher = task_rows(args, Path(tmp), task, seed)
                before = stored.setdefault(task, {}).get(seed, {}).get("rows", [])
                stored[task][seed] = {"rows": merged_rows(before, rows, args.methods, METHODS),
                                      "floor": teacher["floor"], "teacher_dopri5": w2_of(teacher, "dopri5")}
                write(args, stored)  # after each seed: a stop keeps what is done


def task_rows(args: argparse.Namespace, tmp: Path, task: str, seed: int) -> tuple[list[dict], dict]:
    """The rows of one task at one training seed (teacher and the students named in --methods, each W2 also as a
    ratio to this seed's teacher at dopri5) and the teacher's summary."""
    source, target = task.split(":")
    data = [f"data.source={source}", f"data.target={target}", f"seed={seed}"]
    teacher, t = trained(tmp / f"{task}-seed{seed}-teacher", "recipe=rectified", *data,
                         "eval.compare=[euler:1,euler:2,euler:4]", f"trainer.max_steps={args.steps}")
    rows = [{"method": "teacher (rectified)", "solver": r["solver"], "nfe": r["nfe"], "w2": r["value"],
             "w2_std": r["std"], "train_s": t["train_seconds"]} for r in [*t["rows"], at_steps(teacher, "euler:8")]]
    students = {"meanflow": ["recipe=meanflow", f"trainer.max_steps={args.steps}"],
                "cd": ["recipe=cd", f"method.teacher={teacher}", f"trainer.max_steps={args.steps}"],
                "ct": ["recipe=ct", f"trainer.max_steps={args.steps}"],
                "meanflow_indep": ["recipe=meanflow", "coupling=independent", f"trainer.max_steps={args.steps}"],
                "ct_ot": ["recipe=ct_ot", f"trainer.max_steps={args.steps}"],
                "sct": ["recipe=sct", f"trainer.max_steps={args.steps}"],
                "scd": ["recipe=scd", f"method.teacher={teacher}", f"trainer.max_steps={args.steps}"],
                "adversarial": ["recipe=adversarial", f"method.teacher={teacher}", f"trainer.max_steps={args.steps}"],
                "adversarial_w0": ["recipe=adversarial", f"method.teacher={teacher}", "method.adversarial_weight=0",
                                   f"trainer.max_steps={args.steps}"],
                "shortcut": ["recipe=shortcut", f"trainer.max_steps={args.steps}"],
                "dmd2": ["recipe=dmd2", f"method.teacher={teacher}", f"method.fake_updates={DMD_FAKE_UPDATES}",
                         f"trainer.max_steps={args.steps // (1 + DMD_FAKE_UPDATES)}"]}
    for name in args.methods:
        one, more = f"{SAMPLER[name]}:1", [f"{SAMPLER[name]}:{k}" for k in (2, 4)]
        run, s = trained(tmp / f"{task}-seed{seed}-{name}", *students[name], *data, f"eval.solver={one}",
                         f"eval.compare=[{','.join(more)}]")
        error = paired_error(run, teacher, one)
        rows += [{"method": name, "solver": r["solver"], "nfe": r["nfe"], "w2": r["value"], "w2_std": r["std"],
                  "train_s": s["train_seconds"], "paired_error": error if r["solver"] == one else None}
                 for r in [*s["rows"], at_steps(run, f"{SAMPLER[name]}:8")]]
    dopri5 = w2_of(t, "dopri5")
    for row in rows:
        row["vs_teacher_dopri5"] = row["w2"] / dopri5
    return rows, t


def write(args: argparse.Namespace, stored: dict[str, dict[int, dict]]) -> None:
    """The results file (each task's seeds one by one, and their aggregate) and the tables."""
    results = []
    for task, by_seed in stored.items():
        seeds = sorted(by_seed)
        results.append({"task": task, "seeds": seeds, "rows": over_seeds([by_seed[s]["rows"] for s in seeds], "w2"),
                        "floor": statistics.fmean(by_seed[s]["floor"] for s in seeds),
                        "teacher_dopri5": statistics.fmean(by_seed[s]["teacher_dopri5"] for s in seeds),
                        "per_seed": {str(s): by_seed[s] for s in seeds}})
    lines = [f"One-step frontier, CPU (2 cores): teacher and every student {args.steps} training steps; W2 of each seed "
             "the mean over 5 draws of 2,000 on the same noise; each cell the mean ± std over the seeds (with one "
             "seed: ± over its draws)", ""]
    for res in results:
        dopri5 = next(r for r in res["rows"] if r["solver"] == "dopri5")
        lines += [f"**{res['task'].replace(':', ' -> ')}** (W2 floor {res['floor']:.3f}; teacher dopri5 "
                  f"{mean_spread(dopri5, 'w2', 3)} at {dopri5['nfe']:.0f} NFE; seeds {', '.join(map(str, res['seeds']))})", "",
                  *by_nfe_table(res["rows"], "w2", 3), ""]
    report(args.out, "frontier", {"steps": args.steps, "results": results}, lines)


if __name__ == "__main__":
    main()
