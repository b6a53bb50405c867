"""Image backbones on 32x32 data a CPU can train: the digits upscaled to 32x32 (`recipes/digits32_*`), one
rectified-flow run per backbone (unet, adm, dit) for the same short budget, then 1,000 samples each on the same
noise: FD to the held-out split (averaged back to 8x8, in the shipped classifier's features), the share of samples
the classifier calls with confidence >= 0.9 (real held-out digits score beside them), the class balance
(normalised entropy of the called classes, 1 = uniform), and a sample grid per backbone (`results/digits32_*.png`).

    python bench/digits32.py [--steps 2000] [--backbones unet adm dit] [--work DIR]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from pathlib import Path

import torch

from common import report, trained
from flowkit.config.build import load_run
from flowkit.metrics.digits_features import at_8x8, digits_classifier
from flowkit.metrics.plots import save_samples

BACKBONES = ["unet", "adm", "dit"]
SOLVER = "euler:50"


def called(x: torch.Tensor) -> tuple[float, float]:
    """(share of images the shipped classifier calls with probability >= 0.9, class balance)."""
    with torch.no_grad():
        p = digits_classifier()(at_8x8(x)).softmax(1)
    counts = torch.bincount(p.argmax(1), minlength=10).double()
    q = counts / counts.sum()
    return float((p.max(1).values >= 0.9).double().mean()), float(-(q[q > 0] * q[q > 0].log()).sum() / math.log(10))


@torch.no_grad()
def measure(run: Path, name: str, n: int, summary: dict, out: Path) -> dict:
    cfg, parts = load_run(run)
    x0 = parts.source.sample(n, torch.Generator().manual_seed(0))
    reference = parts.target.reference(n, torch.Generator().manual_seed(1))
    x1, nfe = parts.sample(x0, SOLVER)
    confident, balance = called(x1)
    save_samples(out / f"digits32_{name}.png", x1[:64], title=f"digits 32x32, {name}, {SOLVER}")
    params = sum(p.numel() for p in parts.model.parameters())
    return {"backbone": name, "solver": SOLVER, "nfe": nfe, "fd": parts.target.quality(x1, reference),
            "confident": confident, "class_balance": balance, "train_s": summary["train_seconds"], "params": params,
            "floor": summary["floor"],
            "model": dict(cfg["model"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--backbones", nargs="+", default=BACKBONES, choices=BACKBONES)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--work", type=Path, default=None, help="keep the runs here (re-used when run again)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp())
    rows = []
    for name in args.backbones:
        run, s = trained(work / f"digits32_{name}", f"recipe=digits32_{name}", f"trainer.max_steps={args.steps}")
        rows.append(measure(run, name, args.n, s, args.out))
        print(rows[-1], flush=True)
    _, parts = load_run(run)  # the held-out digits, scored the same way
    confident, balance = called(parts.target.reference(args.n, torch.Generator()))
    lines = [f"Digits upscaled to 32x32, rectified flow, {args.steps} steps at batch 32 on the CPU (2 cores), "
             f"{args.n} samples by {SOLVER}: `python bench/digits32.py --steps {args.steps}`", "",
             "| backbone | parameters | FD (8x8 features) | confidently called | class balance | train time |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['backbone']} | {r['params'] / 1e6:.2f} M | {r['fd']:.2f} | {r['confident']:.0%} | "
              f"{r['class_balance']:.3f} | {r['train_s'] / 60:.1f} min |" for r in rows]
    lines += [f"| held-out digits (real) | | | {confident:.0%} | {balance:.3f} | |", "",
              f"FD floor at 32x32 (500 training images against the held-out split, same features; the runs' "
              f"summaries): {rows[0]['floor']:.2f}."]
    report(args.out, "digits32", {"steps": args.steps, "n": args.n, "rows": rows,
                                  "real": {"confident": confident, "class_balance": balance}}, lines)
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
