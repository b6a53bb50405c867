"""The one-step frontier as a figure: W2 against NFE for every method on each task, from the results of
`bench/frontier.py` (no training here). Each student with its own sampler, the teacher with Euler, at every NFE
the results hold (1, 2, 4, 8); the teacher's dopri5 W2 and the W2 floor as horizontal lines; error bars are the
spread over the seeds of each row where it has several, over the evaluation draws otherwise.

    python bench/frontier_plot.py [--results bench/results/frontier.json] [--out bench/results/frontier.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, ScalarFormatter  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def curves(rows: list[dict]) -> dict[str, list[tuple[int, float, float]]]:
    """(NFE, W2, spread) per method, the teacher's fixed-step rows as "teacher (Euler)"; adaptive rows left out."""
    out: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        if r["solver"] == "dopri5":
            continue
        name = "teacher (Euler)" if r["method"].startswith("teacher") else r["method"]
        spread = r["w2_seed_std"] if r.get("seeds", 1) > 1 else r["w2_std"]
        out.setdefault(name, []).append((r["nfe"], r["w2"], spread))
    return {name: sorted(points) for name, points in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS / "frontier.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "frontier.png")
    args = parser.parse_args()
    data = json.loads(args.results.read_text())
    results = data["results"]
    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 5), squeeze=False)
    palette = plt.get_cmap("tab20").colors  # 20 distinct colours: dark shades first, then the light ones
    palette = palette[0::2] + palette[1::2]
    for ax, res in zip(axes[0], results):
        students = 0
        for name, points in curves(res["rows"]).items():
            nfe, w2, spread = zip(*points)
            if name.startswith("teacher"):
                style = {"color": "black", "linestyle": ":"}
            else:
                style, students = {"color": palette[students % len(palette)]}, students + 1
            ax.errorbar(nfe, w2, yerr=spread, marker="o", capsize=3, label=name, **style)
        ax.axhline(res["teacher_dopri5"], color="black", linewidth=1, label="teacher dopri5")
        ax.axhline(res["floor"], color="grey", linestyle="--", linewidth=1, label="W2 floor")
        ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel="W2",
               title=f"{res['task'].replace(':', ' -> ')} ({data['steps']:,} training steps)")
        ax.set_xticks([1, 2, 4, 8], labels=["1", "2", "4", "8"])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
