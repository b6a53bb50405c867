"""The one-step frontier as a figure: W2 (2-D tasks, from `bench/frontier.py`) or FD (digits, from
`bench/digits_frontier.py`) against NFE for every method on each task (no training here). Each student with its own
sampler, the teacher with Euler, at every NFE the results hold (1, 2, 4, 8); the teacher's dopri5 value and the floor
(real data against the same reference) as horizontal lines; error bars are the spread over the seeds of each row
where it has several, over the evaluation draws otherwise. The digits ablations' variant rows are left out: the
figure is the methods' frontier; digits get a second panel, the same axes near the teacher, where the students crowd.

    python bench/frontier_plot.py [--results bench/results/frontier.json] [--out bench/results/frontier.png]
    python bench/frontier_plot.py --results bench/results/digits_frontier.json   # -> digits_frontier.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter, NullLocator, ScalarFormatter  # noqa: E402

from digits_frontier import METHODS, TEACHER  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def curves(rows: list[dict], key: str) -> dict[str, list[tuple[int, float, float]]]:
    """(NFE, value, spread) per method for the metric ``key`` ("w2" or "fd"), the teacher's fixed-step rows as
    "teacher (Euler)"; adaptive rows left out."""
    out: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        if r["solver"] == "dopri5":
            continue
        name = "teacher (Euler)" if r["method"].startswith("teacher") else r["method"]
        spread = r[f"{key}_seed_std"] if r.get("seeds", 1) > 1 else r.get(f"{key}_std", 0.0)
        out.setdefault(name, []).append((r["nfe"], r[key], spread))
    return {name: sorted(points) for name, points in out.items()}


def panels(data: dict) -> list[dict]:
    """One panel per task: its title, rows, metric and reference lines ((value, label, style) each)."""
    teacher_line = {"color": "black", "linewidth": 1}
    floor_line = {"color": "grey", "linestyle": "--", "linewidth": 1}
    if "results" in data:  # bench/frontier.py: the 2-D tasks, W2
        return [{"title": f"{res['task'].replace(':', ' -> ')} ({data['steps']:,} training steps)",
                 "rows": res["rows"], "key": "w2", "label": "W2",
                 "lines": [(res["teacher_dopri5"], "teacher dopri5", teacher_line),
                           (res["floor"], "W2 floor", floor_line)]}
                for res in data["results"]]
    rows = [r for r in data["rows"] if r["method"] in (*METHODS, TEACHER)]  # bench/digits_frontier.py: FD
    dopri5 = next(r for r in rows if r["solver"] == "dopri5")["fd"]
    full = {"title": f"digits 8x8 ({data['steps']:,} training steps)", "rows": rows, "key": "fd", "label": "FD",
            "lines": [(dopri5, "teacher dopri5", teacher_line)]
            + ([(data["floor"], "FD floor", floor_line)] if "floor" in data else [])}
    # the students crowd within 2x of the teacher: the same axes again, near it
    low = min([r["fd"] - r.get("fd_seed_std", 0.0) for r in rows] + [data.get("floor", dopri5)])
    return [full, {**full, "title": f"{full['title']}, near the teacher", "ylim": (0.9 * low, 2 * dopri5)}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", type=Path, default=RESULTS / "frontier.json")
    parser.add_argument("--out", type=Path, help="the figure (default: the results file's name, .png)")
    args = parser.parse_args()
    tasks = panels(json.loads(args.results.read_text()))
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 5), squeeze=False)
    palette = plt.get_cmap("tab20").colors  # 20 distinct colours: dark shades first, then the light ones
    palette = palette[0::2] + palette[1::2]
    for ax, task in zip(axes[0], tasks):
        students = 0
        for name, points in curves(task["rows"], task["key"]).items():
            nfe, value, spread = zip(*points)
            if name.startswith("teacher"):
                style = {"color": "black", "linestyle": ":"}
            else:
                style, students = {"color": palette[students % len(palette)]}, students + 1
            ax.errorbar(nfe, value, yerr=spread, marker="o", capsize=3, label=name, **style)
        for value, label, style in task["lines"]:
            ax.axhline(value, label=label, **style)
        ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel=task["label"], title=task["title"])
        if "ylim" in task:
            ax.set_ylim(*task["ylim"])
        ax.set_xticks([1, 2, 4, 8], labels=["1", "2", "4", "8"])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.tight_layout()
    out = args.out or args.results.with_suffix(".png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
