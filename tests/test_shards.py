"""Shards (`flowkit encode`, `data.target=shards:DIR`): rows written exactly, read by epochs (every row once per
epoch, DDP ranks disjoint, batch k a function of (seed, k, rank)), an encoding resumed after kill -9 equal to an
uninterrupted one, and training on streamed shards killed mid-epoch and resumed bit for bit."""

import json

import numpy as np
import pytest
import torch

from flowkit.runtime.checkpoint import read_checkpoint
from flowkit.interface.commands import encode
from flowkit.data.pair import build_pair
from flowkit.data.shards import ShardStore, read_index
from flowkit.errors import ConfigError
from tests.helpers import killed, run_cli, tiny


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """40 labelled RGB images of 8x8 as an .npz, and their pixel shards (tiny shards: 6 rows each)."""
    root = tmp_path_factory.mktemp("shards")
    pixels = np.random.default_rng(0).integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(40) % 4
    np.savez(root / "set.npz", images=pixels, labels=labels)
    encode([f"data.target=images:{root / 'set.npz'}", f"out={root / 'pix'}", "shard_mb=0.0011", "reference=10"])
    return root, pixels, labels


def test_pixel_shards_hold_every_image_exactly_once_as_uint8_with_its_label(images):
    root, pixels, labels = images
    index = read_index(root / "pix")
    assert index["count"] == 40 and index["dtype"] == "uint8" and index["shape"] == [3, 8, 8] and index["encoder"] is None
    assert len(index["shards"]) == 7 and sum(index["shards"]) == 40  # 6 rows of 192 bytes in 0.0011 MB
    store = ShardStore(root / "pix", index)
    x, std = store.fetch(torch.arange(40))
    assert std is None and x.dtype == torch.uint8 and x.shape == (40, 1, 3, 8, 8)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))  # the written order (seed 0)
    assert torch.equal(x[:, 0], torch.from_numpy(pixels.transpose(0, 3, 1, 2))[order])
    assert torch.equal(store.labels, torch.from_numpy(labels)[order])


def test_epochs_read_every_row_once_ranks_are_disjoint_and_batches_are_pure(images):
    root, _, _ = images
    index = read_index(root / "pix")
    stores = [ShardStore(root / "pix", index, mix=2) for _ in range(3)]
    for ranks in (1, 2, 3):
        parts = [stores[r].epoch_order(0, seed=5, rank=r, ranks=ranks) for r in range(ranks)]
        together = torch.cat(parts)
        assert sorted(together.tolist()) == list(range(40))  # each row once in the epoch, no rank shares one
    # batch k: the same from a fresh store, straddling epochs (40 rows, batches of 7)
    fresh = ShardStore(root / "pix", index, mix=2)
    stream = torch.cat([stores[0].epoch_order(e, 5, 0, 1) for e in range(3)])
    for k in (0, 5, 6, 11):
        assert torch.equal(fresh.epoch_rows(k, 7, 5, 0, 1), stream[7 * k:7 * (k + 1)])
    assert not torch.equal(stores[0].epoch_order(0, 5, 0, 1), stores[0].epoch_order(1, 5, 0, 1))  # reshuffled
    with pytest.raises(ConfigError, match="7 shards, fewer than the 8 training processes"):
        fresh.epoch_rows(0, 4, 5, 0, 8)


def test_a_shard_dataset_draws_scores_and_keeps_its_reference(images):
    root, pixels, _ = images
    _, target = build_pair("gaussian", f"shards:{root / 'pix'}", None)
    assert target.shape == (3, 8, 8) and target.num_classes == 4 and target.metric == "W2"
    x, y = target.training_batch(3, 16, torch.Generator().manual_seed(0), seed=1, labelled=True)
    assert x.shape == (16, 3, 8, 8) and -1 <= x.min() and x.max() <= 1 and y.shape == (16,)
    real = torch.from_numpy(pixels.transpose(0, 3, 1, 2)).float().div(127.5).sub(1)
    reference = target.reference(10, torch.Generator().manual_seed(0))
    assert all(((real == r).flatten(1).all(1)).any() for r in reference)  # real images, unflipped


def test_an_encoding_killed_with_sigkill_resumes_to_the_same_shards(tmp_path):
    """kill -9 while writing 150 small shards of the digits, run again: the same files as an uninterrupted run."""
    args = ["encode", "data.target=digits", "shard_mb=0.00245", "reference=50"]  # 10 rows of 256 bytes
    killed([*args, f"out={tmp_path / 'killed'}"], tmp_path, (tmp_path / "killed" / "shard-000005.x.npy").exists)
    written = len(list((tmp_path / "killed").glob("shard-*.x.npy")))
    assert not (tmp_path / "killed" / "index.json").exists() and 0 < written < 150, written
    with pytest.raises(ConfigError, match="unfinished flowkit encode"):
        read_index(tmp_path / "killed")
    for out in ("killed", "straight"):
        proc = run_cli([*args, f"out={tmp_path / out}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    a, b = (sorted((tmp_path / out).glob("*.npy")) for out in ("killed", "straight"))
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 2 * 150 + 2  # x and y of each, labels, reference
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(a, b))
    assert not list((tmp_path / "killed").glob(".*.tmp-*"))
    changed = run_cli([*args[:-1], "reference=60", f"out={tmp_path / 'killed'}"], cwd=tmp_path)
    assert changed.returncode == 2 and "holds another encoding (it differs in reference)" in changed.stderr


def test_training_on_streamed_shards_killed_mid_epoch_resumes_bit_identical(tmp_path):
    """Two loader processes read 2-D points from 40 shards by epochs (16 steps an epoch); kill -9 mid-run, resume:
    the same weights, EMA and Adam moments as a run never interrupted."""
    points = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([2.0, 0.5]) + 1
    np.save(tmp_path / "points.npy", points.numpy())
    proc = run_cli(["encode", f"data.path={tmp_path / 'points.npy'}", f"out={tmp_path / 'pts'}", "shard_mb=0.00077",
                    "reference=500"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((tmp_path / "pts" / "index.json").read_text())["shards"]) == 40
    run = [f"data.target=shards:{tmp_path / 'pts'}", "data.workers=2", "trainer.checkpoint_every=25"]
    killed_root = tmp_path / "killed"
    killed(["train", *tiny(killed_root, *run, steps=300)], tmp_path, lambda: list(killed_root.glob("runs/*/last.ckpt")))
    (run_dir,) = list((killed_root / "runs").iterdir())
    step_at_kill = read_checkpoint(run_dir)["global_step"]
    assert 0 < step_at_kill < 300 and step_at_kill * 256 % 4000, "killed mid-way, inside an epoch"
    resumed = run_cli(["train", f"resume={run_dir}", "trainer.enable_progress_bar=false"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    straight = run_cli(["train", *tiny(tmp_path / "straight", *run, steps=300)], cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    (straight_dir,) = list((tmp_path / "straight" / "runs").iterdir())
    a, b = read_checkpoint(run_dir), read_checkpoint(straight_dir)
    assert a["global_step"] == b["global_step"] == 300
    for section in ("state_dict", "current_model_state"):
        assert all(torch.equal(a[section][k], b[section][k]) for k in a[section])
    moments = [(s, t) for s, t in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values())]
    assert all(torch.equal(s["exp_avg"], t["exp_avg"]) and torch.equal(s["exp_avg_sq"], t["exp_avg_sq"]) for s, t in moments)
    summary = json.loads((straight_dir / "summary.json").read_text())
    assert summary["metric"] == "W2" and summary["rows"][0]["value"] < 1.0  # it learned the shifted Gaussian
