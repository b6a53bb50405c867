"""Multi-node, one run: two torchrun "nodes" of one process each on 127.0.0.1 (gloo, CPU) train into one run
directory on a shared run_root; only global rank 0 writes it, and rank 1's batches are its own and count."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from flowkit.runtime.checkpoint import read_checkpoint
from flowkit.data.pair import PairStream, build_pair
from tests.helpers import run_cli, tiny

ROOT = Path(__file__).resolve().parent.parent
RUN = ["trainer.num_nodes=2", "trainer.strategy=ddp", "trainer.devices=1", "trainer.accelerator=cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_train_into_one_run_directory(tmp_path):
    port, runs = free_port(), tmp_path / "shared"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                               f"--node-rank={rank}", "--master-addr=127.0.0.1", f"--master-port={port}",
                               str(ROOT / "cli.py"), "train", *tiny(runs, *RUN, steps=20)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=400) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    (run_dir,) = list((runs / "runs").iterdir())  # one run directory, not one per node
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 20
    assert {p.name for p in run_dir.iterdir()} >= {"config.yaml", "last.ckpt", "logs", "samples.png", "summary.json"}

    # rank 1 draws batches of its own ...
    source, target = build_pair("gaussian", "8gaussians", None)
    first = [next(iter(PairStream(source, target, 256, 0, rank=rank, ranks=2)))["x1"] for rank in (0, 1)]
    assert not torch.equal(*first)
    # ... and they count: the same run in one process (rank 0's batches alone) ends with other weights
    single = run_cli(["train", *tiny(tmp_path / "single", "trainer.accelerator=cpu", steps=20)], cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    (single_dir,) = list((tmp_path / "single" / "runs").iterdir())
    a, b = read_checkpoint(run_dir)["current_model_state"], read_checkpoint(single_dir)["current_model_state"]
    assert a.keys() == b.keys() and not all(torch.equal(a[k], b[k]) for k in a)
