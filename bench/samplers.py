"""Samplers side by side (issue: samplers): quality at a fixed NFE budget for every sampler family, on the
uniform and the log-SNR time grids, for three teachers trained with `flowkit train`:

    rectified  gaussian -> 8gaussians, rectified path (recipe rectified), W2 against 2,000 fresh target points
    vp         gaussian -> 8gaussians, VP path (recipe vp), W2
    digits_vp  8x8 digits, VP path (recipe digits_vp), FD to the held-out split in the fixed classifier's features

Each sampler gets the largest step count whose NFE fits the budget (Heun, DPM-Solver-2 and EDM spend 2 NFE a
step, 1 on a step that touches an end of the path where log-SNR is infinite; DPM-Solver++(3M) 1 more on its
starter step); all draw from the same 2,000
source points; the dopri5 row (rtol = atol = 1e-5) is the reference quality.

    python bench/samplers.py [--budgets 5 10 20] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from common import over_teachers, report
from flowkit.config.build import load_run
from flowkit.samplers.grids import grid_times
from flowkit.samplers.ddim import interior

TEACHERS = {"rectified": ["recipe=rectified"], "vp": ["recipe=vp"], "digits_vp": ["recipe=digits_vp"]}
SAMPLERS = {"euler": "Euler", "heun": "Heun", "ddim": "DDIM", "dpm2": "DPM-Solver-2", "dpm++2m": "DPM-Solver++(2M)",
            "dpm++3m": "DPM-Solver++(3M)", "em": "Euler-Maruyama", "edm": "EDM Heun"}
GRIDS = ["uniform", "logsnr"]


def nfe_of(name: str, path, grid: str, steps: int) -> int:
    """NFE of ``steps`` steps of sampler ``name`` on ``grid`` (without running it)."""
    if name == "heun":
        return 2 * steps
    if name in ("dpm2", "edm", "dpm++3m"):
        ts = grid_times(grid, path, steps)
        inside = [interior(path, t, s) for t, s in zip(ts[:-1], ts[1:])]
        if name == "dpm++3m":  # one more on the starter step of each interior run
            return steps + sum(now and (i == 0 or not inside[i - 1]) for i, now in enumerate(inside))
        return steps + sum(inside)
    return steps


def steps_for(name: str, path, grid: str, budget: int) -> int:
    """The most steps whose NFE fits ``budget`` (at least one)."""
    return max([k for k in range(1, budget + 1) if nfe_of(name, path, grid, k) <= budget], default=1)


@torch.no_grad()
def rows_of(run: Path, teacher: str, budgets: list[int], n: int) -> list[dict]:
    _, parts = load_run(run)
    x0 = parts.source.sample(n, torch.Generator().manual_seed(0))
    reference = parts.target.reference(n, torch.Generator().manual_seed(1))
    x1, nfe = parts.sample(x0, "dopri5")
    rows = [{"teacher": teacher, "sampler": "dopri5", "grid": "-", "budget": 0, "spec": "dopri5", "nfe": nfe,
             "metric": parts.target.metric, "value": parts.target.quality(x1, reference)}]
    print(teacher, "dopri5", nfe, f"{rows[0]['value']:.4f}", flush=True)
    for grid in GRIDS:
        for name in SAMPLERS:
            for budget in budgets:
                spec = f"{name}:{steps_for(name, parts.path, grid, budget)}"
                x1, nfe = parts.sample(x0, spec, grid=grid)
                value = parts.target.quality(x1, reference) if torch.isfinite(x1).all() else float("nan")
                rows.append({"teacher": teacher, "sampler": name, "grid": grid, "budget": budget, "spec": spec,
                             "nfe": nfe, "metric": parts.target.metric, "value": value})
                print(teacher, grid, spec, nfe, f"{value:.4f}", flush=True)
    return rows


def table(rows: list[dict], teacher: str, budgets: list[int]) -> list[str]:
    mine = [r for r in rows if r["teacher"] == teacher]
    ref = next((r for r in mine if r["sampler"] == "dopri5"), None)  # rows of an older run may lack it
    reference = f"dopri5: {ref['value']:.3f} at {ref['nfe']} NFE" if ref else "dopri5 not measured"
    head = " | ".join(f"{g} {b}" for g in GRIDS for b in budgets)
    lines = [f"**{teacher}** ({mine[0]['metric']}; {reference}; columns: grid and NFE budget, cells: value "
             "(NFE spent))", "", f"| sampler | {head} |", "|---|" + "---|" * len(GRIDS) * len(budgets)]
    for name, label in SAMPLERS.items():
        cells = []
        for grid in GRIDS:
            for budget in budgets:
                r = next(r for r in mine if r["sampler"] == name and r["grid"] == grid and r["budget"] == budget)
                cells.append(f"{r['value']:.3f} ({r['nfe']})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budgets", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--teachers", nargs="+", default=list(TEACHERS), choices=list(TEACHERS))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--work", type=Path, default=None, help="folder for the teachers; given again, re-used")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    chosen = {teacher: TEACHERS[teacher] for teacher in args.teachers}
    rows = over_teachers(chosen, args.work, lambda run, teacher: rows_of(run, teacher, args.budgets, args.n))
    previous = args.out / "samplers.json"  # the teachers not re-run keep their rows
    if previous.is_file():
        old = json.loads(previous.read_text())
        if old.get("budgets") == args.budgets:
            rows = [r for r in old["rows"] if r["teacher"] not in args.teachers] + rows
    lines = ["Samplers at a fixed NFE budget, CPU (2 cores); 2,000 samples from the same source points", ""]
    for teacher in [t for t in TEACHERS if any(r["teacher"] == t for r in rows)]:
        lines += table(rows, teacher, args.budgets)
    report(args.out, "samplers", {"budgets": args.budgets, "rows": rows}, lines)


if __name__ == "__main__":
    main()
