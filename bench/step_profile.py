"""Where a training step's time goes: `flowkit train` (rectified, the 2-D MLP at batch 256) under cProfile,
its per-step time split into the network's work (data draws, loss forward, backward, AdamW step, EMA update)
and everything around it (Lightning's loop and hooks, flowkit's own hooks), against the same work in a bare
loop (TorchCFM's documented shape: draw, loss, backward, step; flowkit's EMA added so the two do the same).

    python bench/step_profile.py [--steps 2000] [--batch 256]

The bare loop is what a step costs without a framework; the difference is the trainer's overhead per step.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import torch

from common import report
from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.data.pair import build_pair
from flowkit.methods import METHODS
from flowkit.models import MODELS
from flowkit.paths import PATHS
from flowkit.timesteps import TIME_SAMPLERS
from flowkit.training.loop import train

# (label, function names in cProfile's stats that hold the time of that part, cumulative)
PARTS = [("data: source and target draws", ("__iter__",), "flowkit/data/pair.py"),
         ("loss forward (time draws, path, network)", ("loss",), "flowkit/methods.py"),
         ("backward", ("backward",), "torch/_tensor.py"),
         ("AdamW step", ("step",), "torch/optim/adamw.py"),
         ("EMA update", ("update_parameters",), "torch/optim/swa_utils.py"),
         ("finite watch: gradient norm and flags", ("total_norm", "note", "check"), "flowkit/"),
         ("time and coupling seeds", ("on_train_batch_start",), "flowkit/training/module.py")]


def bare_steps_per_s(batch: int, steps: int) -> float:
    """Draw, CFM loss, backward, AdamW, EMA: the work of a step with no trainer around it."""
    source, target = build_pair("gaussian", "8gaussians", None)
    torch.manual_seed(0)
    model = MODELS.build({"name": "mlp", "width": 256, "depth": 3, "time_dim": 64}, data_shape=(2,))
    method = METHODS.build({"name": "cfm"}, path=PATHS.build({"name": "rectified"}),
                           time_sampler=TIME_SAMPLERS.build({"name": "logit_normal"}))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    ema = torch.optim.swa_utils.AveragedModel(model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.999))
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        pair = {"x0": source.sample(batch, generator), "x1": target.sample(batch, generator)}
        loss = method.loss(model, pair)["loss"].mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update_parameters(model)

    for _ in range(50):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def profiled_run(batch: int, steps: int, root: Path) -> tuple[float, pstats.Stats]:
    cfg = apply_overrides(load_recipe("rectified"), [f"trainer.max_steps={steps}", f"data.batch_size={batch}",
                                                     f"trainer.checkpoint_every={10 * steps}", f"run_root={root}",
                                                     "trainer.enable_progress_bar=false", "eval.n=200", "eval.repeats=1",
                                                     "eval.compare=[]", "eval.solver=euler:2"])
    profile = cProfile.Profile()
    profile.enable()
    result = train(cfg)
    profile.disable()
    return result.seconds, pstats.Stats(profile)


def cumulative(stats: pstats.Stats, names: tuple[str, ...], where: str) -> float:
    """Seconds spent inside the named functions of files under ``where`` (outermost calls only)."""
    total = 0.0
    for (file, _, name), (_, _, _, cum, callers) in stats.stats.items():
        if name in names and where in file:
            if any(name == caller[2] and where in caller[0] for caller in callers):
                continue  # a recursive or nested call: counted at its outermost caller
            total += cum
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    bare = bare_steps_per_s(args.batch, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        seconds, stats = profiled_run(args.batch, args.steps, Path(tmp))
    fit_per_step = cumulative(stats, ("fit",), "lightning/pytorch/trainer/trainer.py") / args.steps
    rows = [(label, 1e6 * cumulative(stats, names, where) / args.steps) for label, names, where in PARTS]
    accounted = sum(us for _, us in rows)
    rows.append(("Lightning's loop, hooks and everything else", 1e6 * fit_per_step - accounted))
    lines = [f"Per-step time of `flowkit train recipe=rectified` at batch {args.batch}, {args.steps} steps under "
             f"cProfile (which slows Python-heavy parts more than kernels): {1e6 * fit_per_step:.0f} us a step; "
             f"the bare loop (same work, no trainer, no profiler): {1e6 / bare:.0f} us a step ({bare:.0f} steps/s).",
             "", "| part | us / step | share |", "|---|---|---|"]
    lines += [f"| {label} | {us:.0f} | {us / (1e6 * fit_per_step):.0%} |" for label, us in rows]
    report(args.out, "step_profile_cpu", {"batch": args.batch, "steps": args.steps, "bare_steps_per_s": bare,
                                          "fit_us_per_step": 1e6 * fit_per_step,
                                          "parts_us": dict(rows), "train_seconds": seconds}, lines)


if __name__ == "__main__":
    main()
