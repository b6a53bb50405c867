"""flowkit I-CFM and OT-CFM against TorchCFM's `ConditionalFlowMatcher` and
`ExactOptimalTransportConditionalFlowMatcher` on the 2-D tasks of the TorchCFM paper, in one run.

Both sides train the same network (flowkit's MLP, 3 x 256, time embedding 64) with the same optimiser
(AdamW, lr 1e-3, betas (0.9, 0.999)), batch (256), steps and seeds, on the same data distributions.
flowkit runs as its users run it (`flowkit train recipe=rectified|ot_cfm`: logit-normal times, EMA
0.999); TorchCFM as its examples do (a plain loop: uniform times, sigma = 0, no EMA). Both are
evaluated the same way: dopri5 (rtol = atol = 1e-5) from the same 2,000 source points, NFE counted by
the same solver, W2 (POT emd2) to the same 2,000 fresh target points.

TorchCFM is a peer, not a dependency: `pip install --no-deps torchcfm` (it pulls torchvision otherwise).

    python bench/quality_2d.py [--steps 5000] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import report, torchcfm_data, torchcfm_layout, trained
from flowkit.config.build import load_run
from flowkit.data.pair import build_pair
from flowkit.metrics.distances import w2
from flowkit.models import MODELS
from flowkit.samplers.integrate import solve

TASKS = ["gaussian:8gaussians", "gaussian:moons", "8gaussians:moons"]
RECIPES = {"I-CFM": "rectified", "OT-CFM": "ot_cfm"}
MLP = {"name": "mlp", "width": 256, "depth": 3, "time_dim": 64}


def torchcfm_run(method: str, source, target, steps: int, seed: int, batch: int = 256) -> tuple[torch.nn.Module, float]:
    """TorchCFM's training loop (its README / examples), on flowkit's MLP."""
    from torchcfm.conditional_flow_matching import (ConditionalFlowMatcher,
                                                    ExactOptimalTransportConditionalFlowMatcher)

    torch.manual_seed(seed)
    matcher = (ConditionalFlowMatcher if method == "I-CFM" else ExactOptimalTransportConditionalFlowMatcher)(sigma=0.0)
    model = MODELS.build(MLP, data_shape=target.shape)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(steps):
        x0, x1 = source.sample(batch, generator), target.sample(batch, generator)
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        loss = (model(xt, t) - ut).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval(), time.perf_counter() - start


@torch.no_grad()
def evaluate(model: torch.nn.Module, source, target, n: int = 2000) -> tuple[float, int]:
    x0 = source.sample(n, torch.Generator().manual_seed(1234))
    reference = target.sample(n, torch.Generator().manual_seed(5678))
    x1, nfe = solve(model, x0, method="dopri5", rtol=1e-5, atol=1e-5)
    return w2(x1, reference), nfe


def summary(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            data = torchcfm_data(task)  # TorchCFM's own toy layouts (moons evenly spaced) on both sides
            source, target = build_pair(*map(torchcfm_layout, task.split(":")), None)
            for method, recipe in RECIPES.items():
                for seed in args.seeds:
                    run, s = trained(Path(tmp) / f"{task}-{method}-{seed}", f"recipe={recipe}", f"seed={seed}",
                                     *data,
                                     f"trainer.max_steps={args.steps}", "eval.compare=[]", "eval.repeats=1")
                    ours = load_run(run)[1].model.eval()
                    theirs, seconds = torchcfm_run(method, source, target, args.steps, seed)
                    for lib, model, train_s in (("flowkit", ours, s["train_seconds"]), ("torchcfm", theirs, seconds)):
                        value, nfe = evaluate(model, source, target)
                        rows.append({"task": task, "method": method, "library": lib, "seed": seed, "w2": value,
                                     "nfe": nfe, "train_s": train_s})
                        print(rows[-1], flush=True)
    table = []
    for task in args.tasks:
        for method in RECIPES:
            for lib in ("flowkit", "torchcfm"):
                mine = [r for r in rows if (r["task"], r["method"], r["library"]) == (task, method, lib)]
                (w, ws), (n, ns) = summary([r["w2"] for r in mine]), summary([r["nfe"] for r in mine])
                table.append({"task": task, "method": method, "library": lib, "w2": w, "w2_std": ws, "nfe": n,
                              "nfe_std": ns, "train_s": statistics.mean(r["train_s"] for r in mine)})
    lines = [f"2-D quality, CPU (2 cores): {args.steps} steps, batch 256, seeds {args.seeds}; mean ± std over seeds; "
             "dopri5 rtol = atol = 1e-5", "",
             "| task | method | library | W2 | dopri5 NFE |", "|---|---|---|---|---|"]
    lines += [f"| {r['task'].replace(':', ' -> ')} | {r['method']} | {r['library']} | {r['w2']:.3f} ± {r['w2_std']:.3f} | "
              f"{r['nfe']:.0f} ± {r['nfe_std']:.0f} |" for r in table]  # speed: bench/throughput.py
    report(args.out, "quality_2d", {"steps": args.steps, "seeds": args.seeds, "rows": rows, "table": table}, lines)


if __name__ == "__main__":
    main()
