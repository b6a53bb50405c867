"""The order of every deterministic sampler on every registered path, on its default grid (or ``--grid``), against
the exact flow of Gaussian data (the closed-form oracle of tests/gaussian_model.py: N(0, I) -> N(mu, s^2 I), so the
error is the sampler's alone). Error: the largest distance to the exact map over 256 source points, at 64, 128, 256
and 512 steps; order: the least-squares slope of log2(error) against log2(steps), next to the sampler's nominal
order.

    python bench/sampler_orders.py [--grid graded] [--steps 64 128 256 512]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the oracle the sampler tests use
from common import report  # noqa: E402
from flowkit.methods import METHODS  # noqa: E402
from flowkit.paths import PATHS  # noqa: E402
from flowkit.samplers import grid_of, sample_with  # noqa: E402
from flowkit.timesteps import TIME_SAMPLERS  # noqa: E402
from tests.gaussian_model import GaussianVelocity, exact_map  # noqa: E402

NOMINAL = {"euler": 1, "ddim": 1, "midpoint": 2, "heun": 2, "dpm2": 2, "dpm++2m": 2, "edm": 2, "heun3": 3,
           "dpm++3m": 3, "rk4": 4}
FLOOR = 1e-11  # float64 round-off: errors below it say nothing about the order


def order(steps: list[int], errors: list[float]) -> float:
    points = [(math.log2(s), math.log2(e)) for s, e in zip(steps, errors) if e > FLOOR]
    if len(points) < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    return -sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default=None, help="one grid for every sampler (default: each one's default_grid)")
    parser.add_argument("--steps", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    x0 = torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rows = []
    for path_name in sorted(PATHS.names() if hasattr(PATHS, "names") else dict(PATHS.items())):
        path = PATHS.build({"name": path_name})
        method = METHODS.build({"name": "cfm"}, path=path, time_sampler=TIME_SAMPLERS.build({"name": "uniform"}))
        net, exact = GaussianVelocity(path), exact_map(path, x0)
        for sampler, nominal in NOMINAL.items():
            errors = [float((sample_with(method, net, path, x0, f"{sampler}:{n}", grid=args.grid)[0] - exact)
                            .norm(dim=1).max()) for n in args.steps]
            measured = order(args.steps, errors)
            rows.append({"path": path_name, "sampler": sampler, "grid": grid_of(f"{sampler}:{args.steps[0]}", args.grid),
                         "nominal": nominal, "order": measured,
                         "errors": errors, "holds": measured >= nominal - 0.2})
            print(path_name, sampler, nominal, f"{measured:.2f}", flush=True)
    name = (args.grid or "default").replace(":", "-")  # a file name without a colon
    where = f"the `{args.grid}` grid" if args.grid else "its default grid"
    command = f" --grid {args.grid}" if args.grid else ""
    lines = [f"Order of each deterministic sampler on {where} against the exact Gaussian flow, "
             f"{args.steps[0]} to {args.steps[-1]} steps (`python bench/sampler_orders.py{command}`):", "",
             "| path | sampler | grid | nominal | measured | error at " + " / ".join(map(str, args.steps))
             + " | at least nominal - 0.2 |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['path']} | {r['sampler']} | {r['grid']} | {r['nominal']} | {r['order']:.2f} | "
              f"{' / '.join(f'{e:.1e}' for e in r['errors'])} | {'yes' if r['holds'] else 'no'} |" for r in rows]
    report(args.out, f"sampler_orders_{name}", {"grid": name, "steps": args.steps, "rows": rows}, lines)


if __name__ == "__main__":
    main()
