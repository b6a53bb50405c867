"""Digits frontier (README, Benchmarks): FD of one-step students against a rectified teacher on 8x8 digits.

Trains `digits_rectified` (the teacher) and the requested students with `flowkit train`, then samples
2,000 digits from each on the same noise and reports the Frechet distance to the held-out split in the
fixed classifier's features: the teacher at dopri5 and Euler 1/2/4/8, each student with its own sampler at 1/2/4/8 steps.

    python bench/digits_frontier.py [--steps 4000] [--work DIR] [--seeds 0 1 2]
                                    [--methods meanflow meanflow_indep cd ct sct scd adversarial shortcut dmd2]
                                    [--variants meanflow:optim.ema_warmup=false ...]

DMD2 trains steps / 6 generator steps with 5 fake-flow steps each: the same number of network updates as the others.

Every run is trained once per seed in --seeds (default 0), each student against its own seed's teacher; each seed's
rows are kept in the results file, so seeds can be added by later calls, and each row of the table is the mean over
the seeds that have it ± their standard deviation (the ratio to the teacher taken per seed). Seeds and methods not
named keep their rows from the results file at the same --steps, read again before each write, so calls for different
seeds can run side by side.

A variant (--variants METHOD:OVERRIDE[,OVERRIDE...]) is a method trained with more `flowkit train` overrides, against
the same seed's teacher, sampled as the method is; its row, named "METHOD (OVERRIDES)", follows the methods' rows and
is kept as they are: the digits ablations of what holds a student above its teacher.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from common import by_nfe_table, mean_spread, merged_rows, over_seeds, report, trained
from flowkit.config.build import load_run
from flowkit.data.digits import Digits

TEACHER = "teacher (rectified)"  # the teacher's rows' method name
TEACHER_SOLVERS = ["dopri5", "euler:1", "euler:2", "euler:4", "euler:8"]
METHODS = ["meanflow", "meanflow_indep", "cd", "ct", "sct", "scd", "adversarial", "shortcut", "dmd2"]
# each student's own few-step sampler: MeanFlow's average-velocity jumps, the shortcut model's step-size jumps,
# predict-and-re-noise for the others
SAMPLER = {name: "meanflow" if name.startswith("meanflow") else "shortcut" if name == "shortcut" else "renoise"
           for name in METHODS}
# name -> (recipe, extra overrides); meanflow_indep: the paper's independent pairs (the recipe uses OT pairs)
RUNS = {"meanflow_indep": ("digits_meanflow", ["coupling=independent"])}
DISTILLERS = ("cd", "scd", "adversarial", "dmd2")  # trained from the teacher run
DMD_FAKE_UPDATES = 5


@torch.no_grad()
def fd_rows(run: Path, name: str, solvers: list[str], n: int, seconds: float) -> list[dict]:
    cfg, parts = load_run(run)
    x0 = parts.source.sample(n, torch.Generator().manual_seed(0))
    reference = held_out(parts.target, n)
    rows = []
    for spec in solvers:
        x1, nfe = parts.sample(x0, spec)
        rows.append({"method": name, "solver": spec, "nfe": nfe, "fd": parts.target.quality(x1, reference),
                     "train_s": seconds})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4000, help="training steps of the teacher and each student")
    parser.add_argument("--methods", nargs="*", default=METHODS, choices=METHODS)
    parser.add_argument("--variants", nargs="*", default=[], type=variant, help="METHOD:OVERRIDE[,OVERRIDE...]")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds of every run")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one); "
                        "given again after a stop, the runs finished there are re-used")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    floor = fd_floor(args.n)
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            rows = seed_rows(args, Path(args.work or scratch), seed)
            # the file is read again at each write: calls at other seeds running beside this one keep their rows
            stored = stored_seeds(args.out / "digits_frontier.json", args.steps)
            old = stored.get(seed, [])
            named = [*args.methods, *(name for name, _, _ in args.variants)]
            stored[seed] = merged_rows(old, rows, named, METHODS + variant_names(old, rows))
            write(args, stored, floor)  # after each seed: a stop keeps what is done


def seed_rows(args: argparse.Namespace, tmp: Path, seed: int) -> list[dict]:
    """The teacher's rows and those of the students in --methods at one training seed, each FD also as a ratio to
    this seed's teacher at dopri5."""
    steps, at = f"trainer.max_steps={args.steps}", f"seed={seed}"
    teacher, t = trained(tmp / f"seed{seed}-teacher", "recipe=digits_rectified", steps, at)
    rows = fd_rows(teacher, TEACHER, TEACHER_SOLVERS, args.n, t["train_seconds"])
    runs = [(name, name, []) for name in args.methods] + args.variants
    for name, method, overrides in runs:
        recipe, extra = RUNS.get(method, (f"digits_{method}", []))
        extra = extra + ([f"method.teacher={teacher}"] if method in DISTILLERS else [])
        budget = steps
        if method == "dmd2":
            budget = f"trainer.max_steps={args.steps // (1 + DMD_FAKE_UPDATES)}"
            extra += [f"method.fake_updates={DMD_FAKE_UPDATES}"]
        folder = "-".join([method, *overrides]).replace("/", "_")
        run, s = trained(tmp / f"seed{seed}-{folder}", f"recipe={recipe}", budget, at, *extra, *overrides)
        rows += fd_rows(run, name, [f"{SAMPLER[method]}:{k}" for k in (1, 2, 4, 8)], args.n, s["train_seconds"])
    for row in rows:
        row["vs_teacher_dopri5"] = row["fd"] / rows[0]["fd"]
    return rows


def finished_runs(works: list[Path], seeds: list[int] | None = None) -> Iterator[tuple[int, str, Path]]:
    """(seed, name, run) of every finished run in these work folders (``DIR/seed<S>-<name>/<run>``, name the method
    or a variant's "METHOD-OVERRIDES"), in path order, at ``seeds`` (all when None); a seed's run found in several
    folders (a teacher copied beside other calls' runs) counts once: the first."""
    seen = set()
    for folder in sorted(f for work in works for f in work.glob("seed*-*")):
        seed, _, name = folder.name.partition("-")
        seed = int(seed.removeprefix("seed"))
        runs = sorted(p.parent for p in folder.glob("*/summary.json"))
        if runs and (seeds is None or seed in seeds) and (seed, name) not in seen:
            seen.add((seed, name))
            yield seed, name, runs[0]


def held_out(target: Digits, n: int) -> torch.Tensor:
    """The reference every row is scored against: the target's held-out draw of ``n``."""
    return target.reference(n, torch.Generator().manual_seed(1))


@torch.no_grad()
def fd_floor(n: int) -> float:
    """The FD floor: n training digits, drawn as the target draws them, against the same held-out reference: what
    an exact sampler scores."""
    target = Digits()
    return target.quality(target.sample(n, torch.Generator().manual_seed(2)), held_out(target, n))


def variant(text: str) -> tuple[str, str, list[str]]:
    """--variants' METHOD:OVERRIDE[,OVERRIDE...] as (row name, method, overrides)."""
    method, _, overrides = text.partition(":")
    if method not in METHODS or "=" not in overrides:
        raise argparse.ArgumentTypeError(f"variant {text!r}: expected METHOD:KEY=VALUE[,KEY=VALUE...] with METHOD one "
                                         f"of {', '.join(METHODS)}")
    return f"{method} ({overrides})", method, overrides.split(",")


def variant_names(*tables: list[dict]) -> list[str]:
    """The variants' row names in ``tables``, in order: every row that is neither a method nor the teacher."""
    return list(dict.fromkeys(r["method"] for rows in tables for r in rows
                              if r["method"] not in (*METHODS, TEACHER)))


def stored_seeds(file: Path, steps: int) -> dict[int, list[dict]]:
    """Per seed, the rows of earlier calls at the same step budget (a file written before seeds were kept holds
    seed 0's rows)."""
    old = json.loads(file.read_text()) if file.exists() else {}
    if old.get("steps") != steps:
        return {}
    return {int(seed): rows for seed, rows in old.get("per_seed", {"0": old.get("rows", [])}).items()}


def write(args: argparse.Namespace, stored: dict[int, list[dict]], floor: float) -> None:
    """The results file (each seed's rows, their aggregate and the FD floor) and the table."""
    seeds = sorted(stored)
    rows = over_seeds([stored[s] for s in seeds], "fd")
    dopri5 = next(r for r in rows if r["solver"] == "dopri5")
    lines = [f"Digits (8x8), CPU (2 cores), {args.steps} training steps each; FD to the held-out split, {args.n} "
             f"samples on the same noise; FD floor {floor:.2f} ({args.n} training digits); teacher dopri5 FD "
             f"{mean_spread(dopri5, 'fd', 2)} at {dopri5['nfe']:.0f} NFE; each cell the mean ± std over the seeds "
             f"(seeds {', '.join(map(str, seeds))})", "", *by_nfe_table(rows, "fd", 2)]
    report(args.out, "digits_frontier", {"steps": args.steps, "seeds": seeds, "floor": floor, "rows": rows,
                                         "per_seed": {str(s): stored[s] for s in seeds}}, lines)


if __name__ == "__main__":
    main()
