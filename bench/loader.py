"""The training loader on data of growing size: 2k, 20k and 200k synthetic 32x32 RGB images (uint8), held in memory
(`data.target=images:FILE`, decoded once into one uint8 tensor) or streamed from shards (`flowkit encode`, then
`data.target=shards:DIR`). Each configuration runs in a fresh process: the training loader (flowkit's pair stream
behind a DataLoader, batch 256, `data.workers` loader processes) draws 300 batches after 20 of warm-up; reported
are images/s and the peak memory of the process and its loader processes together (proportional set size: pages
the workers share with the parent are counted once), sampled every 20 ms.

    python bench/loader.py [--sizes 2000 20000 200000] [--workers 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from common import flowkit, report

BATCH, WARMUP, BATCHES = 256, 20, 300


def pss_kb(pid: int) -> int:
    """The proportional set size of process ``pid`` in kB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return 0


def tree(pid: int) -> list[int]:
    """``pid`` and its children (the loader processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *[int(c) for c in children]]


def child(target: str, workers: int) -> None:
    """One configuration, in this process: build the target as training does, draw the batches, print JSON."""
    import torch
    from torch.utils.data import DataLoader

    from flowkit.data.pair import PairStream, build_pair

    peak, done = [0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], sum(pss_kb(p) for p in tree(os.getpid())))
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    torch.set_num_threads(1)
    source, data = build_pair("gaussian", target, None)  # prepare(): the in-memory set is decoded here
    loader = DataLoader(PairStream(source, data, BATCH, seed=0), batch_size=None, num_workers=workers,
                        persistent_workers=workers > 0)
    batches = iter(loader)
    for _ in range(WARMUP):
        next(batches)
    start = time.perf_counter()
    for _ in range(BATCHES):
        batch = next(batches)
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    assert batch["x1"].shape == (BATCH, 3, 32, 32)
    print(json.dumps({"images_per_s": BATCHES * BATCH / seconds, "peak_mb": peak[0] / 1024}))


def measure(target: str, workers: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", target, "--workers", str(workers)],
                          capture_output=True, text=True, cwd=Path(__file__).parent)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.workers)
    work = args.work or Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        images = work / f"images{size}.npy"
        if not images.is_file():
            np.save(images, np.random.default_rng(size).integers(0, 256, size=(size, 32, 32, 3), dtype=np.uint8))
        shards = work / f"shards{size}"
        if not (shards / "index.json").is_file():
            flowkit("encode", f"data.target=images:{images}", f"out={shards}")
        for kind, target in (("in memory", f"images:{images}"), ("streamed", f"shards:{shards}")):
            rows.append({"size": size, "kind": kind, "workers": args.workers, **measure(target, args.workers)})
            print(rows[-1], flush=True)
    by = {(r["size"], r["kind"]): r for r in rows}
    streamed = [by[(s, "streamed")]["peak_mb"] for s in args.sizes]
    lines = [f"The training loader at batch {BATCH} with {args.workers} loader processes, synthetic 32x32 RGB images: "
             f"`python bench/loader.py`", "",
             "| images | data size | in memory: peak MB | streamed: peak MB | in memory: images/s | streamed: images/s | "
             "streamed / in memory |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {s:,} | {s * 3072 / 2**20:.0f} MB | {by[(s, 'in memory')]['peak_mb']:.0f} | "
              f"{by[(s, 'streamed')]['peak_mb']:.0f} | {by[(s, 'in memory')]['images_per_s']:,.0f} | "
              f"{by[(s, 'streamed')]['images_per_s']:,.0f} | "
              f"{by[(s, 'streamed')]['images_per_s'] / by[(s, 'in memory')]['images_per_s']:.2f} |" for s in args.sizes]
    lines += ["", f"Streamed peak memory across the sizes: {min(streamed):.0f}-{max(streamed):.0f} MB "
                  f"(largest / smallest {max(streamed) / min(streamed):.2f})."]
    report(args.out, "loader", {"batch": BATCH, "batches": BATCHES, "workers": args.workers, "rows": rows}, lines)
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
