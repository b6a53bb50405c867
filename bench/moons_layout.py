"""What the moons layout does to the W2 floor: torchdyn's evenly spaced moons (`moons(even=true)`, the same angles
in every draw of n) against independent draws of the same law (flowkit's `moons`).

The floor of a metric is what a perfect model scores: an independent draw of the data law against the reference.
With the even layout the summary's floor compares two draws that share their angles, which no sampler of the law
can match; this measures by how much. Every row is a mean ± std over 5 reference draws of n points (W2, POT
emd2). With `--steps N` it also trains the 8gaussians -> moons teachers (recipes rectified and ot_cfm, N steps,
`--seeds`) on each layout and gives each one's dopri5 W2 against its own summary's floor (the training summary's
numbers: means over 5 draws of 2,000), and each even-layout teacher scored against the independent references.

    python bench/moons_layout.py [--n 2000] [--steps 10000 --seeds 0 1 2 --work DIR]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from common import report, trained
from flowkit.data import DATASETS
from flowkit.metrics.distances import w2


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--steps", type=int, default=0, help="train the teachers for this many steps (0: no teachers)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=None, help="keep (and re-use) the teachers' runs here")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    even, independent = DATASETS.build({"name": "moons", "even": True}), DATASETS.build({"name": "moons"})
    generator = torch.Generator().manual_seed(0)
    refs = {"even": [even.sample(args.n, generator) for _ in range(args.draws)],
            "independent": [independent.sample(args.n, generator) for _ in range(args.draws)]}
    drawn = {"even draw (torchdyn's layout)": even, "independent draw (the law)": independent}
    rows = []
    for label, data in drawn.items():
        for ref_name, ref in refs.items():
            value = mean_std([w2(data.sample(args.n, generator), r) for r in ref])
            rows.append({"drawn": label, "reference": ref_name, "w2": value[0], "w2_std": value[1]})
    teachers = teacher_rows(args, refs["independent"], generator) if args.steps else []
    lines = [f"moons: W2 between draws of n={args.n} (mean ± std over {args.draws} reference draws)", "",
             "| drawn | reference layout | W2 |", "|---|---|---|"]
    lines += [f"| {r['drawn']} | {r['reference']} | {r['w2']:.3f} ± {r['w2_std']:.3f} |" for r in rows]
    if teachers:
        lines += ["", f"8gaussians -> moons teachers, {args.steps} steps, seeds {args.seeds} (mean ± std over seeds)", "",
                  "| layout | recipe | W2 dopri5 | floor | W2 / floor | against independent references |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {t['layout']} | {t['recipe']} | {t['w2']:.3f} ± {t['w2_std']:.3f} | {t['floor']:.3f} | "
                  f"{t['ratio']:.2f} ± {t['ratio_std']:.2f} | "
                  + (f"{t['w2_independent']:.3f} ± {t['w2_independent_std']:.3f}" if "w2_independent" in t else "")
                  + " |" for t in teachers]
    report(args.out, "moons_layout", {"n": args.n, "draws": args.draws, "rows": rows, "steps": args.steps,
                                      "seeds": args.seeds, "teachers": teachers}, lines)


def teacher_rows(args: argparse.Namespace, independent_refs: list[torch.Tensor], generator: torch.Generator
                 ) -> list[dict]:
    """Each recipe trained on each layout at each seed: its summary's dopri5 W2 and floor, and (even layout) its
    dopri5 samples against the independent references."""
    import tempfile

    import flowkit

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout, extra in (("even", ["data.target.even=true"]), ("independent", [])):
            for recipe in ("rectified", "ot_cfm"):
                per_seed = []
                for seed in args.seeds:
                    run, summary = trained((args.work or Path(tmp)) / f"{layout}-{recipe}-{seed}", f"recipe={recipe}",
                                           "data.source=8gaussians", "data.target=moons", *extra, f"seed={seed}",
                                           f"trainer.max_steps={args.steps}", "eval.compare=[]")
                    row = {"w2": summary["rows"][0]["value"], "floor": summary["floor"]}
                    if layout == "even":
                        flow = flowkit.load(run)
                        row["w2_independent"] = statistics.fmean(
                            w2(flow.sample(args.n, "dopri5", generator=generator), r) for r in independent_refs)
                    per_seed.append(row)
                    print(layout, recipe, seed, row, flush=True)
                out = {"layout": layout, "recipe": recipe, "seeds_w2": [r["w2"] for r in per_seed]}
                for key in per_seed[0]:
                    out[key] = statistics.fmean(r[key] for r in per_seed)
                    out[f"{key}_std"] = statistics.stdev(r[key] for r in per_seed) if len(per_seed) > 1 else 0.0
                ratios = [r["w2"] / r["floor"] for r in per_seed]
                out["ratio"] = statistics.fmean(ratios)
                out["ratio_std"] = statistics.stdev(ratios) if len(ratios) > 1 else 0.0
                rows.append(out)
    return rows


if __name__ == "__main__":
    main()
