"""Training steps/s and dopri5 sampling samples/s: flowkit against TorchCFM's training loop and Meta
flow_matching's `AffineProbPath` + `ODESolver`, same network, batch, data and device; reports ratios.

Configurations: the 2-D MLP (3 x 256) on gaussian -> 8gaussians at batch 256 and 4096, and the digits
UNet (channels 32, mults 1-2-2) at batch 256. flowkit is timed as users run it, `flowkit train` (the
Lightning trainer with its EMA, checkpoints off): steps/s = (N2 - N1) / (t(N2) - t(N1)) from two runs'
fit times, so start-up cancels. The peers run their documented loops (I-CFM, uniform t, AdamW, data
drawn per step from the same flowkit distributions and moved to the device), timed after a warm-up
with the device synchronised. Sampling: the same network (seeded initialisation), 4096 (2-D) or 1024
(digits) points, dopri5 at rtol = atol = 1e-5, flowkit's `solve` against flow_matching's `ODESolver`,
best of 5 timed solves each.

Peers are not dependencies: `pip install --no-deps torchcfm flow_matching`.

    python bench/throughput.py [--device cpu|cuda] [--steps 300] [--trials 3] [--compile none|default|reduce-overhead|max-autotune]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import report, trained
from flowkit.data.pair import build_pair
from flowkit.models import MODELS
from flowkit.samplers.integrate import solve

CONFIGS = [  # (label, recipe, target, batch)
    ("2-D MLP, batch 256", "rectified", "8gaussians", 256),
    ("2-D MLP, batch 4096", "rectified", "8gaussians", 4096),
    ("digits UNet, batch 256", "digits_rectified", "digits", 256),
]
MODEL = {"rectified": {"name": "mlp", "width": 256, "depth": 3, "time_dim": 64},
         "digits_rectified": {"name": "unet", "channels": 32, "mults": [1, 2, 2], "time_dim": 64}}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flowkit_steps_per_s(recipe: str, batch: int, steps: int, device: str, tmp: Path, compile_mode: str = "none",
                        extra: tuple[str, ...] = ()) -> float:
    """Steps/s of `flowkit train recipe=RECIPE ... EXTRA` from the fit times of two run lengths."""
    def fit_seconds(n: int) -> float:
        run = "-".join([recipe, str(batch), str(n), compile_mode, *extra]).replace("/", "_")
        _, s = trained(tmp / run, f"recipe={recipe}", f"data.batch_size={batch}", f"trainer.compile={compile_mode}",
                       f"trainer.max_steps={n}", f"trainer.checkpoint_every={10 * n}", f"device={device}",
                       "eval.repeats=1", "eval.n=500", "eval.compare=[]", "eval.solver=euler:4", *extra)
        return s["train_seconds"]

    n1 = max(10, steps // 5)
    return (steps - n1) / (fit_seconds(steps) - fit_seconds(n1))


def peer_steps_per_s(library: str, recipe: str, target_name: str, batch: int, steps: int,
                     device: torch.device) -> float:
    source, target = build_pair("gaussian", target_name, None)
    torch.manual_seed(0)
    model = MODELS.build(MODEL[recipe], data_shape=target.shape).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    if library in ("torchcfm", "torchcfm_ot"):
        from torchcfm.conditional_flow_matching import (ConditionalFlowMatcher,
                                                        ExactOptimalTransportConditionalFlowMatcher)

        matcher = (ExactOptimalTransportConditionalFlowMatcher if library == "torchcfm_ot" else ConditionalFlowMatcher)(0.0)
        pair = matcher.sample_location_and_conditional_flow
    else:
        from flow_matching.path import AffineProbPath
        from flow_matching.path.scheduler import CondOTScheduler

        path = AffineProbPath(scheduler=CondOTScheduler())

        def pair(x0, x1):
            t = torch.rand(x0.shape[0], device=x0.device)
            sample = path.sample(t=t, x_0=x0, x_1=x1)
            return t, sample.x_t, sample.dx_t

    def step() -> None:
        x0 = source.sample(batch, generator).to(device, non_blocking=True)
        x1 = target.sample(batch, generator).to(device, non_blocking=True)
        t, xt, ut = pair(x0, x1)
        loss = (model(xt, t) - ut).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    warmup = max(10, steps // 5)
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps - warmup):
        step()
    sync(device)
    return (steps - warmup) / (time.perf_counter() - start)


@torch.no_grad()
def sampling(recipe: str, target_name: str, device: torch.device, n: int) -> dict[str, float]:
    """samples/s (and NFE) of dopri5 for flowkit's `solve` and flow_matching's `ODESolver`."""
    from flow_matching.solver import ODESolver

    source, target = build_pair("gaussian", target_name, None)
    torch.manual_seed(0)  # the same network (and so the same NFE) on every run
    model = MODELS.build(MODEL[recipe], data_shape=target.shape).to(device).eval()
    x0 = source.sample(n, torch.Generator().manual_seed(0)).to(device)
    calls = 0

    def velocity(x, t, **extras):
        nonlocal calls
        calls += 1
        return model(x, t.expand(x.shape[0]) if t.dim() == 0 else t)

    def timed(run, repeats: int = 5) -> tuple[float, int]:
        """Best of ``repeats`` timed runs after a warm-up (one solve is a fraction of a second)."""
        nonlocal calls
        run()  # warm-up
        best = float("inf")
        for _ in range(repeats):
            calls = 0
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            best = min(best, time.perf_counter() - start)
        return n / best, calls

    ours, ours_nfe = timed(lambda: solve(velocity, x0, method="dopri5", rtol=1e-5, atol=1e-5))
    solver = ODESolver(velocity_model=velocity)
    theirs, theirs_nfe = timed(lambda: solver.sample(x_init=x0, step_size=None, method="dopri5", atol=1e-5, rtol=1e-5))
    return {"flowkit": ours, "flowkit_nfe": ours_nfe, "flow_matching": theirs, "flow_matching_nfe": theirs_nfe}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 300 CPU, 2000 GPU)")
    parser.add_argument("--trials", type=int, default=3, help="interleaved trials per configuration; the table "
                        "gives medians (the ratios: the median of the per-trial ratios)")
    parser.add_argument("--compile", default="none", choices=["none", "default", "reduce-overhead", "max-autotune"],
                        help="also time flowkit with trainer.compile=MODE (compilation cancels in the differencing)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    device = torch.device(args.device)
    steps = args.steps or (2000 if device.type == "cuda" else 300)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, recipe, target, batch in CONFIGS:
            n = steps if recipe == "rectified" else max(50, steps // 4)
            row_device = "gpu" if device.type == "cuda" else "cpu"
            trials = []  # interleaved, so that a slow spell of a shared machine hits all three alike
            for _ in range(args.trials):
                trials.append({"flowkit": flowkit_steps_per_s(recipe, batch, n, row_device, Path(tmp)),
                               "torchcfm": peer_steps_per_s("torchcfm", recipe, target, batch, n, device),
                               "flow_matching": peer_steps_per_s("flow_matching", recipe, target, batch, n, device)})
            row = {"config": label, "steps": n, "trials": trials,
                   **{k: statistics.median(t[k] for t in trials) for k in ("flowkit", "torchcfm", "flow_matching")},
                   **{f"flowkit_over_{k}": statistics.median(t["flowkit"] / t[k] for t in trials)
                      for k in ("torchcfm", "flow_matching")}}
            if args.compile != "none":
                row["flowkit_compiled"] = flowkit_steps_per_s(recipe, batch, n, row_device, Path(tmp), args.compile)
            if batch == 256:
                row["sampling"] = sampling(recipe, target, device, 4096 if recipe == "rectified" else 1024)
            rows.append(row)
            print(row, flush=True)
    lines = [f"Throughput on {device_name(device)}: `python bench/throughput.py --device {args.device} --steps {steps} "
             f"--trials {args.trials}` (medians of {args.trials} interleaved trials; the TorchCFM ratio's range in brackets)", "",
             "| config | flowkit steps/s | TorchCFM steps/s | flow_matching steps/s | flowkit / TorchCFM | "
             "flowkit / flow_matching |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['config']} | {r['flowkit']:.1f} | {r['torchcfm']:.1f} | {r['flow_matching']:.1f} | "
              f"{r['flowkit_over_torchcfm']:.2f} ({min(t['flowkit'] / t['torchcfm'] for t in r['trials']):.2f}-"
              f"{max(t['flowkit'] / t['torchcfm'] for t in r['trials']):.2f}) | {r['flowkit_over_flow_matching']:.2f} |"
              for r in rows]
    if args.compile != "none":
        lines += ["", f"| config | flowkit, trainer.compile={args.compile}, steps/s | vs eager flowkit | vs TorchCFM |",
                  "|---|---|---|---|"]
        lines += [f"| {r['config']} | {r['flowkit_compiled']:.1f} | {r['flowkit_compiled'] / r['flowkit']:.2f} | "
                  f"{r['flowkit_compiled'] / r['torchcfm']:.2f} |" for r in rows]
    lines += ["", "| sampling (dopri5, 1e-5) | flowkit samples/s | flow_matching samples/s | NFE (flowkit / fm) | ratio |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['config'].split(',')[0]} | {s['flowkit']:.0f} | {s['flow_matching']:.0f} | "
              f"{s['flowkit_nfe']} / {s['flow_matching_nfe']} | {s['flowkit'] / s['flow_matching']:.2f} |"
              for r in rows if (s := r.get("sampling"))]
    report(args.out, f"throughput_{device.type}", {"device": device_name(device), "rows": rows}, lines)


if __name__ == "__main__":
    main()
