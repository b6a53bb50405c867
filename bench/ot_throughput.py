"""Minibatch OT's share of the training step, and keeping it from dominating: OT-CFM training steps/s with
the pairing solved in the training step (`data.workers=0`) or by W DataLoader processes overlapped with it
(`data.workers=W`), exact (`coupling=ot`) and entropic (`coupling=sinkhorn`), against the same run on
independent pairs (I-CFM, the ceiling: no OT at all) and against TorchCFM's
`ExactOptimalTransportConditionalFlowMatcher` in its documented loop; plus the time of one coupling call
alone. Recipe `ot_cfm` (2-D MLP 3 x 256, gaussian -> 8gaussians); steps/s as in `bench/throughput.py`
(two run lengths' fit times differenced, so start-up, worker start included, cancels).

Peers are not dependencies: `pip install --no-deps torchcfm`.

    python bench/ot_throughput.py [--device cpu|cuda] [--batches 256 1024] [--workers 1 2] [--steps 300]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import report
from flowkit.couplings import COUPLINGS
from flowkit.data.pair import build_pair
from throughput import device_name, flowkit_steps_per_s, peer_steps_per_s, sync


def coupling_ms(name: str, batch: int, device: torch.device, repeats: int = 5) -> float:
    """Milliseconds per call of the coupling alone on a batch of gaussian -> 8gaussians (after a warm-up)."""
    source, target = build_pair("gaussian", "8gaussians", None)
    g = torch.Generator().manual_seed(0)
    x0, x1 = source.sample(batch, g).to(device), target.sample(batch, g).to(device)
    coupling = COUPLINGS.build({"name": name})
    coupling(x0, x1)
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        coupling(x0, x1)
    sync(device)
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="data.workers values besides 0")
    parser.add_argument("--steps", type=int, default=300, help="timed steps at batch 256 (scaled down for larger)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    device = torch.device(args.device)
    run_device = "gpu" if device.type == "cuda" else "cpu"
    runs = [("I-CFM (no OT)", ("coupling=independent",))]
    runs += [(f"ot, workers={w}", ("coupling=ot", f"data.workers={w}")) for w in [0, *args.workers]]
    runs += [(f"sinkhorn, workers={w}", ("coupling=sinkhorn", f"data.workers={w}")) for w in [0, max(args.workers)]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for batch in args.batches:
            n = max(60, args.steps * 256 // batch)
            row = {"batch": batch, "steps": n, "ot_ms": coupling_ms("ot", batch, device),
                   "sinkhorn_ms": coupling_ms("sinkhorn", batch, device),
                   "torchcfm_ot": peer_steps_per_s("torchcfm_ot", "rectified", "8gaussians", batch, n, device),
                   "flowkit": {label: flowkit_steps_per_s("ot_cfm", batch, n, run_device, Path(tmp), extra=extra)
                               for label, extra in runs}}
            rows.append(row)
            print(row, flush=True)
    lines = [f"Minibatch OT in the training step on {device_name(device)}: "
             f"`python bench/ot_throughput.py --device {args.device}`", "",
             "| batch | coupling alone (ms): ot / sinkhorn | flowkit run | steps/s | vs I-CFM (no OT) | vs TorchCFM OT-CFM |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        ceiling = r["flowkit"]["I-CFM (no OT)"]
        alone = f"{r['ot_ms']:.1f} / {r['sinkhorn_ms']:.1f}"
        lines += [f"| {r['batch']} | {alone} | {label} | {v:.1f} | {v / ceiling:.2f} | {v / r['torchcfm_ot']:.2f} |"
                  for label, v in r["flowkit"].items()]
        lines += [f"| {r['batch']} | {alone} | TorchCFM OT-CFM loop | {r['torchcfm_ot']:.1f} | "
                  f"{r['torchcfm_ot'] / ceiling:.2f} | 1.00 |"]
    report(args.out, f"ot_throughput_{device.type}", {"device": device_name(device), "rows": rows}, lines)


if __name__ == "__main__":
    main()
