"""What a one-step student's W2 above its teacher's is made of on the 2-D tasks (README, the frontier's ablations):
the mass it gives each mode (8gaussians) or arc (moons), mass off the target's support, or the shape of what it
puts on it.

    python bench/frontier.py --work DIR                  # trains (or re-uses) the runs
    python bench/w2_anatomy.py --work DIR [DIR ...] [--seeds 0 1 2] [--name w2_anatomy]

Reads every finished run in the work folders of bench/frontier.py or bench/ablation.py (``DIR/<folder naming its
task and seed>/<run>``), samples it as its training evaluated it (a teacher at dopri5, a student with its own
1-step sampler) on the training summary's noise, and scores against the summary's reference draws (5 x 2,000: the
frontier's W2). The support is a cloud of 100,000 target points; each sample's class (mode, arc) is its nearest
cloud point's. Two counterfactuals each repair one thing:

- *snapped*: every sample off the support moved to the support's nearest point, the rest kept: on 8gaussians the
  support is the discs of 4 std around the modes, on moons the points within 5% of the target's RMS radius of the
  cloud (the table gives the margin, and the share of fresh target points beyond it). A student whose gap is mass
  between the modes or arcs loses it here.
- *the student's class weights, exact shapes*: every sample replaced by a fresh target point of its class. What
  is left above the floor is the mass per class (its own draw of noise: about ±0.01 on 8gaussians and ±0.03 on
  moons from one draw to the next).

Also: the total variation between the student's class weights and the target's, the share of samples off the
support, and the in-class spread: the RMS distance of a class's samples to their mean over the target's, averaged
over the classes (1.0 for an exact sampler; under 1, narrower).
"""

from __future__ import annotations

import argparse
import re
import statistics
from pathlib import Path
from typing import Any

import torch

from common import nearest, report, seed_means
from flowkit.config.build import load_run
from flowkit.training.evaluate import evaluation_draws

TASKS = ["gaussian:8gaussians", "8gaussians:moons"]
SUPPORT = {"gaussian:8gaussians": "further than 4 std from every mode centre",
           "8gaussians:moons": "further than 5% of the RMS radius from the cloud"}
SEED = 1234  # the training summary's evaluation seed (flowkit.compare's default): the frontier's W2
CLOUD = 100_000
RADIUS = 0.05  # off a cloud's support: further from every cloud point than this share of the target's RMS radius
MODE_STDS = 4.0  # off a mixture's support: further from every mode centre than this many standard deviations


def onto_support(data: Any, x: torch.Tensor, cloud: torch.Tensor,
                 near: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, float]:
    """Each row moved to the nearest point of the support (unmoved inside it), and the support's margin: for a
    Gaussian mixture with ``centers`` and ``std`` (8gaussians) the discs of MODE_STDS std around the modes, else
    the points within RADIUS x the RMS radius of the cloud (moons: a band of compact support; ``near``: the rows'
    ``nearest`` cloud points where the caller has them)."""
    if hasattr(data, "centers"):
        margin = MODE_STDS * data.std
        offset = x - data.centers[torch.cdist(x, data.centers).argmin(1)]
        norm = offset.norm(dim=1, keepdim=True)
        return x - offset * (1 - margin / norm).clamp(min=0), margin
    margin = RADIUS * float((cloud - cloud.mean(0)).pow(2).sum(1).mean().sqrt())
    distance, index = near if near is not None else nearest(x, cloud)
    return torch.where((distance > margin)[:, None], cloud[index], x), margin


def spread(x: torch.Tensor, label: torch.Tensor, classes: int) -> torch.Tensor:
    """Per class, the RMS distance of its rows to their mean (nan for an empty class)."""
    return torch.stack([(x[label == k] - x[label == k].mean(0)).pow(2).sum(1).mean().sqrt() for k in range(classes)])


@torch.no_grad()
def anatomy(parts: Any, spec: str, n: int, repeats: int, seed: int) -> dict[str, float]:
    """A loaded run's W2 as is and under each counterfactual (means over the reference draws; the counterfactuals'
    own draws from ``seed``), and its class and support statistics."""
    data = parts.target.dataset  # the built toy: labelled draws
    gen = torch.Generator().manual_seed(seed)
    cloud, cloud_label = data.sample_labelled(CLOUD, gen)
    fresh, fresh_label = data.sample_labelled(4 * n * repeats, gen)
    x0, refs, (floor, _) = evaluation_draws(parts, n, repeats, SEED, torch.device("cpu"))
    x1, _ = parts.sample(x0, spec)
    near = nearest(x1, cloud)
    label = cloud_label[near[1]]
    snapped, margin = onto_support(data, x1, cloud, near)
    off = (snapped != x1).any(1)
    exact_shapes = torch.empty_like(x1)
    classes = data.num_classes
    for k in range(classes):
        mine = label == k
        pool = fresh[fresh_label == k]  # 4x the draws: enough of every class but for a collapsed student's
        exact_shapes[mine] = pool[torch.arange(int(mine.sum())) % pool.shape[0]]
    quality = parts.target.quality

    def w2(x: torch.Tensor) -> float:
        return statistics.fmean(quality(part, ref) for part, ref in zip(x.split(n), refs))

    weights = torch.bincount(label, minlength=classes).double() / x1.shape[0]
    truth = torch.bincount(fresh_label, minlength=classes).double() / fresh.shape[0]
    ratio = spread(x1, label, classes) / spread(fresh, fresh_label, classes)
    return {"floor": floor, "w2": w2(x1), "w2_snapped": w2(snapped), "w2_exact_shapes": w2(exact_shapes),
            "tv": 0.5 * float((weights - truth).abs().sum()), "off": float(off.double().mean()), "margin": margin,
            "target_off": float((onto_support(data, fresh, cloud)[0] != fresh).any(1).double().mean()),
            "spread": float(ratio[~ratio.isnan()].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, nargs="+", required=True,
                        help="work folders of bench/frontier.py or bench/ablation.py")
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="w2_anatomy", help="the results files' name in --out (.md and .json)")
    args = parser.parse_args()
    found: dict[str, dict[str, list[dict]]] = {task: {} for task in args.tasks}
    for work in args.work:
        for summary in sorted(work.glob("*/*/summary.json")):
            folder = summary.parent.parent.name
            seed = re.search(r"seed(\d+)", folder)
            cfg, parts = load_run(summary.parent)
            task = f"{cfg['data']['source']}:{cfg['data']['target']}"
            if task not in found or not seed or int(seed[1]) not in args.seeds:
                continue
            name = re.sub(r"-+", "-", folder.replace(task, "").replace(seed[0], "")).strip("-")
            spec = cfg["eval"]["solver"]  # the run's own: dopri5 for a teacher, a student's 1-step sampler
            found[task].setdefault(name, []).append(
                {"sampler": spec, **anatomy(parts, spec, args.n, args.repeats, int(seed[1]))})
            print(task, folder, found[task][name][-1], flush=True)
    results, lines = [], [f"Anatomy of the 1-NFE W2 (the training summary's {args.repeats} draws of {args.n}; mean "
                          "over the seeds found; each run named by its folder, less the task and the seed)", ""]
    for task, by_name in found.items():
        rows = seed_means(by_name)
        if not rows:
            continue
        results.append({"task": task, "rows": rows})
        lines += [f"**{task.replace(':', ' -> ')}** (W2 floor {statistics.fmean(r['floor'] for r in rows):.3f}; off "
                  f"the support: {SUPPORT[task]} ({rows[0]['margin']:.3f}), as "
                  f"{100 * statistics.fmean(r['target_off'] for r in rows):.2f}% of fresh target points are)", "",
                  "| run | sampler | W2 | snapped onto the support | the student's class weights, exact shapes | "
                  "class weights TV | off the support | in-class spread / target's | seeds |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['run']} | {r['sampler']} | {r['w2']:.3f} | {r['w2_snapped']:.3f} | "
                  f"{r['w2_exact_shapes']:.3f} | {r['tv']:.3f} | {100 * r['off']:.2f}% | {r['spread']:.3f} | "
                  f"{r['seeds']} |" for r in rows]
        lines.append("")
    report(args.out, args.name, {"n": args.n, "repeats": args.repeats, "results": results}, lines)


if __name__ == "__main__":
    main()
