"""What the weight average carries: the 1-NFE FD of each digits-frontier run with its EMA weights (what flowkit
samples with) and with its raw weights (the last optimiser step's), on the frontier's noise and reference.

    python bench/digits_frontier.py --seeds 0 1 2 --work DIR    # trains (or re-uses) the runs
    python bench/ema_weights.py --work DIR [DIR ...]

Reads every finished run ``DIR/seed<S>-<name>/<run>`` (the teacher at Euler 8 steps: its one step is not a sample),
its checkpoint's ``state_dict`` (EMA) and ``current_model_state`` (raw); each row the mean over the seeds found
(a seed's run found in two folders counts once: the first).
A student far better with its EMA than without is one that a longer average (or more steps) may still move.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from common import report
from digits_frontier import METHODS, SAMPLER, finished_runs
from flowkit.config.build import load_run

WEIGHTS = {"EMA": "state_dict", "raw": "current_model_state"}


@torch.no_grad()
def fds(run: Path, spec: str, n: int) -> dict[str, float]:
    """FD of the run's samples with ``spec`` under each of its two sets of weights."""
    _, parts = load_run(run)
    checkpoint = torch.load(run / "last.ckpt", map_location="cpu", weights_only=False)
    x0 = parts.source.sample(n, torch.Generator().manual_seed(0))
    reference = parts.target.reference(n, torch.Generator().manual_seed(1))
    out = {}
    for name, key in WEIGHTS.items():
        parts.model.load_state_dict({k.removeprefix("model."): v for k, v in checkpoint[key].items()
                                     if k.startswith("model.")})
        out[name] = parts.target.quality(parts.sample(x0, spec)[0], reference)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, nargs="+", required=True, help="bench/digits_frontier.py's --work folders")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    found: dict[str, list[dict[str, float]]] = {}
    for _, name, run in finished_runs(args.work):
        method = name.split("-")[0]
        if method != "teacher" and method not in METHODS:
            continue
        spec = "euler:8" if method == "teacher" else f"{SAMPLER[method]}:1"
        found.setdefault(name, []).append({"spec": spec, **fds(run, spec, args.n)})
    order = ["teacher", *METHODS]
    rows = [{"run": name, "sampler": seeds[0]["spec"], "seeds": len(seeds),
             **{w: statistics.fmean(s[w] for s in seeds) for w in WEIGHTS}}
            for name, seeds in sorted(found.items(), key=lambda kv: (order.index(kv[0].split("-")[0]), kv[0]))]
    lines = [f"FD of each digits-frontier run with its EMA and its raw weights ({args.n} samples, the frontier's noise "
             "and reference; mean over the seeds found)", "",
             "| run | sampler | FD, EMA weights | FD, raw weights | raw / EMA | seeds |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['sampler']} | {r['EMA']:.2f} | {r['raw']:.2f} | {r['raw'] / r['EMA']:.2f} | "
              f"{r['seeds']} |" for r in rows]
    report(args.out, "ema_weights", {"n": args.n, "rows": rows}, lines)


if __name__ == "__main__":
    main()
