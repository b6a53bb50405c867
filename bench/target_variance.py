"""How noisy consistency training's target is, per 2-D task and coupling (README, the frontier's ablations).

CT's target for x_t is the same pair one grid step on, x_{t+dt} = x_t + dt v with v = x1 - x0 the conditional
velocity of the pair (rectified path); its spread at fixed x_t is dt times that of v. This measures, with no model,
the share of v's energy that is noise at fixed x_t, E||v - E[v | x_t]||^2 / E||v||^2, for independent pairs and for
minibatch-OT pairs (ExactOT on blocks of the training batch size, as the recipes train), at t = 0.1 ... 0.9.
E[v | x_t] is a k-nearest-neighbour mean over a separate reference draw (2-D: the neighbours are close), and the
query's own residual is divided by 1 + 1/k for the neighbour mean's own noise.

    python bench/target_variance.py [--n 100000] [--queries 4000] [--k 64] [--batch 256]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from common import report
from flowkit.couplings import COUPLINGS
from flowkit.data import DATASETS

TASKS = ["gaussian:8gaussians", "8gaussians:moons"]
TIMES = [0.1, 0.3, 0.5, 0.7, 0.9]


def pairs(task: str, coupling: str, n: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs (x0, x1), coupled block by block of ``batch`` rows."""
    source, target = (DATASETS.build({"name": name}) for name in task.split(":"))
    gen = torch.Generator().manual_seed(seed)
    x0, x1 = source.sample(n, gen), target.sample(n, gen)
    couple = COUPLINGS.build({"name": coupling})
    blocks = [couple(a, b) for a, b in zip(x0.split(batch), x1.split(batch))]
    return torch.cat([a for a, _ in blocks]), torch.cat([b for _, b in blocks])


def noise_share(task: str, coupling: str, t: float, args: argparse.Namespace) -> tuple[float, float]:
    """(E||v - E[v | x_t]||^2, E||v||^2) at time t."""
    ref0, ref1 = pairs(task, coupling, args.n, args.batch, seed=0)
    q0, q1 = pairs(task, coupling, args.queries, args.batch, seed=1)
    ref_x, ref_v = (1 - t) * ref0 + t * ref1, ref1 - ref0
    q_x, q_v = (1 - t) * q0 + t * q1, q1 - q0
    residual = []
    for xs, vs in zip(q_x.split(500), q_v.split(500)):
        near = torch.cdist(xs, ref_x).topk(args.k, largest=False).indices
        residual.append((vs - ref_v[near].mean(1)).pow(2).sum(1))
    noise = float(torch.cat(residual).mean()) / (1 + 1 / args.k)
    return noise, float(q_v.pow(2).sum(1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="reference pairs per (task, coupling, t)")
    parser.add_argument("--queries", type=int, default=4000)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256, help="the block size of minibatch OT (the recipes' batch)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    for task in TASKS:
        for coupling in ("independent", "ot"):
            for t in TIMES:
                noise, energy = noise_share(task, coupling, t, args)
                rows.append({"task": task, "coupling": coupling, "t": t, "noise": noise, "energy": energy,
                             "share": noise / energy})
    lines = [f"Noise in the conditional velocity at fixed x_t, E||v - E[v|x_t]||^2 / E||v||^2 (kNN, k={args.k}, "
             f"{args.n:,} reference pairs; OT in blocks of {args.batch})", "",
             "| task | pairs | " + " | ".join(f"t={t}" for t in TIMES) + " | mean |",
             "|---|---|" + "---|" * (len(TIMES) + 1)]
    for task in TASKS:
        for coupling in ("independent", "ot"):
            mine = [r for r in rows if r["task"] == task and r["coupling"] == coupling]
            shares = [f"{r['share']:.1%}" for r in mine]
            lines.append(f"| {task.replace(':', ' -> ')} | {coupling} | " + " | ".join(shares) +
                         f" | {statistics.fmean(r['share'] for r in mine):.1%} |")
    report(args.out, "target_variance", {"k": args.k, "n": args.n, "batch": args.batch, "rows": rows}, lines)


if __name__ == "__main__":
    main()
