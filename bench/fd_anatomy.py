"""What a one-step student's digits FD above its teacher's is made of (README, the frontier's ablations): the image
analogue of bench/w2_anatomy.py, in the features FD is taken in (the shipped digits classifier's, 64 of them).

    python bench/digits_frontier.py --work DIR --seeds 0 1 2     # trains (or re-uses) the runs
    python bench/fd_anatomy.py --work DIR [DIR ...] [--seeds 0 1 2] [--name fd_anatomy]

Reads every finished run in the work folders of bench/digits_frontier.py (``DIR/seedS-NAME/<run>``) and samples it
as the frontier does (2,000 samples on the seed-0 noise, FD to the held-out split): a teacher at dopri5, a student
with its own 1-step sampler. The FD is split into its two terms, the distance of the feature means and the rest
(the covariances'). The classifier labels every sample; the data (its 1,500 training images) are labelled the same
way, so the class weights are compared as the classifier sees both. A sample is *off the data* when its features
are further from every training image's than those of 95% of the held-out images are (so 5% of real digits are off
by construction). Two counterfactuals each repair one thing:

- *snapped*: every sample off the data replaced by its nearest training image (in the features), the rest kept.
  A student whose gap is unrecognisable or smeared digits loses it here.
- *the student's class weights, exact shapes*: every sample replaced by a training image of its class (each class's
  images in a fixed shuffled order, cycled; the mean over 5 orders). What is left above the floor (the same at the
  data's own class weights, in the heading) is the mass per class.

Also: the total variation between the samples' class weights and the data's, the share of samples off the data,
and the spread of the features: overall (the root of the covariance's trace) and in-class (the RMS distance of a
class's features to their mean, averaged over the classes), each over the training images' (1.0 for an exact
sampler; under 1, narrower: samples closer to their class's average digit), and the edge strength in pixels (the
mean absolute difference of neighbouring pixels) over the training images' (under 1: blurred strokes).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from common import nearest, report, seed_means
from digits_frontier import METHODS, SAMPLER, finished_runs
from flowkit.config.build import load_run
from flowkit.data.digits import digit_images
from flowkit.metrics.digits_features import at_8x8, digits_classifier
from flowkit.metrics.distances import frechet_distance

CLASSES = 10
OFF = 0.95  # off the data: further from every training image than this share of the held-out images are
SHUFFLES = 5  # the exact-shapes counterfactual is the mean over this many orders of each class's training images


def labelled_features(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The classifier's penultimate features (in which FD is taken) of ``images`` and its labels for them."""
    net = digits_classifier()
    with torch.no_grad():
        features = net.features(at_8x8(images.cpu()))
        return features.double(), net.head(features).argmax(1)


def edges(images: torch.Tensor) -> float:
    """The mean absolute difference of neighbouring pixels (across and down) at 8 x 8, clamped to [-1, 1]: how sharp
    the strokes are (a blurred digit has weaker edges)."""
    x = at_8x8(images.cpu())
    return float(torch.cat([x.diff(dim=-1).flatten(1), x.diff(dim=-2).flatten(1)], 1).abs().mean())


def spread(f: torch.Tensor, label: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The root of the covariance's trace, and per class the RMS distance of its rows to their mean (nan if empty)."""
    per_class = torch.stack([(f[label == k] - f[label == k].mean(0)).pow(2).sum(1).mean().sqrt()
                             for k in range(CLASSES)])
    return float(f.T.cov().trace().sqrt()), per_class


class Data:
    """The training images' features and labels (the support and the classes), the held-out ones' (FD's reference),
    the margin of the support, and the exact-shapes floor: n training images at the data's own class weights."""

    def __init__(self, n: int) -> None:
        train = digit_images("train")[0]
        self.features, self.label = labelled_features(train)
        self.edges = edges(train)
        self.reference = labelled_features(digit_images("test")[0])[0]
        held_out = nearest(self.reference, self.features)[0]
        self.margin = float(held_out.quantile(OFF))
        self.weights = torch.bincount(self.label, minlength=CLASSES).double() / self.label.numel()
        self.total, self.in_class = spread(self.features, self.label)
        gen = torch.Generator().manual_seed(0)
        self.pools = [[order[self.label[order] == k] for k in range(CLASSES)]  # each class's images, shuffled
                      for order in (torch.randperm(self.label.numel(), generator=gen) for _ in range(SHUFFLES))]
        self.floor = self.exact_shapes(self.label[torch.arange(n) % self.label.numel()])

    def fd(self, f: torch.Tensor) -> tuple[float, float]:
        """FD to the held-out split, and its first term (the squared distance of the means)."""
        return frechet_distance(f, self.reference), float((f.mean(0) - self.reference.mean(0)).pow(2).sum())

    def exact_shapes(self, label: torch.Tensor) -> float:
        """The mean FD, over the shuffles, of every row replaced by a training image of its ``label`` (each class's
        images taken in the shuffle's order, cycled)."""
        fds = []
        for pools in self.pools:
            f = torch.empty(label.numel(), self.features.shape[1], dtype=self.features.dtype)
            for k, pool in enumerate(pools):
                mine = label == k
                f[mine] = self.features[pool[torch.arange(int(mine.sum())) % pool.numel()]]
            fds.append(self.fd(f)[0])
        return sum(fds) / len(fds)


@torch.no_grad()
def anatomy(parts: Any, spec: str, n: int, data: Data) -> dict[str, float]:
    """A loaded run's FD as is, its terms, under each counterfactual, and its class and support statistics."""
    x0 = parts.source.sample(n, torch.Generator().manual_seed(0))  # the frontier's noise
    x1 = parts.sample(x0, spec)[0]
    f, label = labelled_features(x1)
    distance, index = nearest(f, data.features)
    off = distance > data.margin
    snapped = torch.where(off[:, None], data.features[index], f)
    fd, mean_term = data.fd(f)
    total, in_class = spread(f, label)
    ratio = in_class / data.in_class
    weights = torch.bincount(label, minlength=CLASSES).double() / n
    return {"fd": fd, "mean_term": mean_term, "fd_snapped": data.fd(snapped)[0],
            "fd_exact_shapes": data.exact_shapes(label), "tv": 0.5 * float((weights - data.weights).abs().sum()),
            "off": float(off.double().mean()), "spread": total / data.total,
            "edges": edges(x1) / data.edges, "in_class": float(ratio[~ratio.isnan()].mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, nargs="+", required=True, help="work folders of bench/digits_frontier.py")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="fd_anatomy", help="the results files' name in --out (.md and .json)")
    args = parser.parse_args()
    data = Data(args.n)
    found: dict[str, list[dict]] = {}
    for seed, name, run in finished_runs(args.work, args.seeds):
        method = name.split("-")[0]
        if method != "teacher" and method not in METHODS:
            continue
        spec = "dopri5" if method == "teacher" else f"{SAMPLER[method]}:1"  # as the frontier samples it
        found.setdefault(name, []).append({"sampler": spec, **anatomy(load_run(run)[1], spec, args.n, data)})
        print(f"seed {seed}", name, found[name][-1], flush=True)
    rows = seed_means(found)
    lines = [f"Anatomy of the digits FD (the frontier's {args.n} samples on the same noise, FD to the held-out split; "
             f"the mean over the seeds found). Off the data: further from every training image's features than "
             f"{OFF:.0%} of the held-out images are ({data.margin:.3f}). Exact shapes at the data's own class weights: "
             f"FD {data.floor:.2f}.", "",
             "| run | sampler | FD | of it, the means' term | snapped onto the data | the student's class weights, "
             "exact shapes | class weights TV | off the data | feature spread / data's | "
             "in-class spread / data's | edge strength / data's | seeds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['sampler']} | {r['fd']:.2f} | {r['mean_term']:.2f} | {r['fd_snapped']:.2f} | "
              f"{r['fd_exact_shapes']:.2f} | {r['tv']:.3f} | {100 * r['off']:.1f}% | "
              f"{r['spread']:.3f} | {r['in_class']:.3f} | {r['edges']:.3f} | {r['seeds']} |" for r in rows]
    report(args.out, args.name, {"n": args.n, "margin": data.margin, "floor": data.floor, "rows": rows}, lines)


if __name__ == "__main__":
    main()
