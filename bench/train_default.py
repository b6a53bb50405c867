"""The README's main job, measured: `flowkit train` (recipe rectified, gaussian -> 8gaussians) per seed.

Wall time is the whole CLI process (start-up, training, sampling, W2, figure), as a user sees it.
W2 and its floor are means over eval.repeats=5 independent draws of 2,000 points (README, Benchmarks).

    python bench/train_default.py [--seeds 0 1 2] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import flowkit


def run(seed: int, root: Path, extra: list[str]) -> dict:
    start = time.perf_counter()
    flowkit("train", f"seed={seed}", f"run_root={root}", "trainer.enable_progress_bar=false", *extra)
    wall = time.perf_counter() - start
    run_dir = max(root.iterdir(), key=lambda p: p.stat().st_mtime)
    summary = json.loads((run_dir / "summary.json").read_text())
    main = summary["rows"][0]
    return {"seed": seed, "wall_s": wall, "train_s": summary["train_seconds"], "w2": main["value"],
            "floor": summary["floor"], "ratio": main["value"] / summary["floor"], "nfe": main["nfe"],
            "rows": summary["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("overrides", nargs="*", help="extra key=value passed to flowkit train")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(seed, Path(tmp), args.overrides) for seed in args.seeds]
    args.out.mkdir(parents=True, exist_ok=True)
    device = f"CPU, {os.cpu_count()} cores, torch threads default"
    (args.out / "train_default.json").write_text(json.dumps({"device": device, "runs": results}, indent=2))
    lines = [f"`flowkit train` (recipe rectified, gaussian -> 8gaussians), {device}", "",
             "| seed | wall (s) | train (s) | dopri5 NFE | W2 | floor | W2 / floor |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['seed']} | {r['wall_s']:.0f} | {r['train_s']:.0f} | {r['nfe']} | {r['w2']:.3f} | "
                     f"{r['floor']:.3f} | {r['ratio']:.2f} |")
    mean = lambda key: statistics.fmean(r[key] for r in results)  # noqa: E731
    lines.append(f"| mean | {mean('wall_s'):.0f} | {mean('train_s'):.0f} | {mean('nfe'):.0f} | {mean('w2'):.3f} | "
                 f"{mean('floor'):.3f} | {mean('ratio'):.2f} |")
    (args.out / "train_default.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
