"""Which grid each sampler should default to, measured on trained networks at the step counts people use
(bench/sampler_orders.py measures the asymptotic order on the exact Gaussian flow; this is the other half of the
choice): the mean distance of each sampler's samples to a tight dopri5 solution from the same 1,000 source points
(rtol = atol = 1e-7), so the error is the sampler's alone, at 8, 16, 32 and 64 steps on the ``uniform`` grid, on
``graded`` (t ~ u^2 over the outer 10% of the steps at each end) and on ``graded:3`` (t ~ u^3), for the
log-SNR samplers and EDM, on two teachers trained with `flowkit train`:

    rectified  gaussian -> 8gaussians, rectified path (recipe rectified)
    vp         gaussian -> 8gaussians, VP path (recipe vp)

    python bench/grid_choice.py [--steps 8 16 32 64] [--work DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from common import over_teachers, report
from flowkit.config.build import load_run

TEACHERS = {"rectified": ["recipe=rectified"], "vp": ["recipe=vp"]}
SAMPLERS = ["dpm2", "dpm++2m", "dpm++3m", "edm"]
GRIDS = ["uniform", "graded", "graded:3"]


@torch.no_grad()
def rows_of(run: Path, teacher: str, steps: list[int], n: int) -> list[dict]:
    _, parts = load_run(run)
    x0 = parts.source.sample(n, torch.Generator().manual_seed(0)).double()
    parts.model.double()
    exact, _ = parts.sample(x0, "dopri5", rtol=1e-7, atol=1e-7)
    rows = []
    for name in SAMPLERS:
        for grid in GRIDS:
            errors = [float((parts.sample(x0, f"{name}:{k}", grid=grid)[0] - exact).norm(dim=1).mean()) for k in steps]
            rows.append({"teacher": teacher, "sampler": name, "grid": grid, "errors": errors})
            print(teacher, name, grid, " ".join(f"{e:.2e}" for e in errors), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=None, help="folder for the teachers; given again, re-used")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = over_teachers(TEACHERS, args.work, lambda run, teacher: rows_of(run, teacher, args.steps, args.n))
    head = " | ".join(f"{g} {k}" for k in args.steps for g in GRIDS)
    lines = [f"Mean distance to dopri5 (rtol = atol = 1e-7) of {args.n:,} samples from the same source points, by "
             "grid, at " + ", ".join(map(str, args.steps)) + " steps (`python bench/grid_choice.py`); the "
             "smallest of each step count in bold", ""]
    for teacher in TEACHERS:
        lines += [f"**{teacher}**", "", f"| sampler | {head} |", "|---|" + "---|" * len(GRIDS) * len(args.steps)]
        for name in SAMPLERS:
            mine = {r["grid"]: r["errors"] for r in rows if r["teacher"] == teacher and r["sampler"] == name}
            cells = []
            for i in range(len(args.steps)):
                best = min(mine[g][i] for g in GRIDS)
                cells += [f"**{mine[g][i]:.1e}**" if mine[g][i] == best else f"{mine[g][i]:.1e}" for g in GRIDS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    report(args.out, "grid_choice", {"steps": args.steps, "n": args.n, "rows": rows}, lines)


if __name__ == "__main__":
    main()
