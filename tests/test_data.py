"""Datasets: TorchCFM's toys, digits, user arrays (loaded without running code)."""

import itertools
import math
import pickle

import numpy as np
import pytest
import torch

from torch.utils.data import DataLoader

from flowkit.couplings import COUPLINGS
from flowkit.data.pair import PairStream, build_pair, step_seed
from flowkit.data import DATASETS
from flowkit.data.digits import Digits
from flowkit.errors import ConfigError
from tests.test_couplings import brute_force_optimum


def draw(name, n=20_000, seed=0):
    return DATASETS.build({"name": name}).sample(n, torch.Generator().manual_seed(seed))


def test_8gaussians_matches_torchcfm():
    x = draw("8gaussians")
    angles = torch.atan2(x[:, 1], x[:, 0])
    mode = torch.round(angles / (math.pi / 4)) % 8
    centres = 5 * torch.stack([torch.cos(mode * math.pi / 4), torch.sin(mode * math.pi / 4)], 1)
    noise = x - centres
    assert noise.std(0).tolist() == pytest.approx([0.1**0.25] * 2, rel=0.03)  # cov sqrt(0.1) I
    counts = torch.bincount(mode.long(), minlength=8).float() / x.shape[0]
    assert counts.tolist() == pytest.approx([1 / 8] * 8, abs=0.015)


def test_moons_matches_torchdyn_generate_moons_then_affine():
    x = draw("moons", n=1000)
    y = (x + 1) / 3  # undo x * 3 - 1
    assert x.shape == (1000, 2)
    assert float(y.min()) >= -1.0 - 1e-6 and float(y[:, 0].max()) <= 2.2 + 1e-6

    # one uniform u in [0, 0.2) shifts both coordinates: (x-u-cx)^2 + (y-u-cy)^2 = 1 on one of the circles
    def on_circle(points, cx, cy):
        u = torch.linspace(0, 0.2, 2001)
        r = ((points[:, None, 0] - u - cx) ** 2 + (points[:, None, 1] - u - cy) ** 2).sqrt()
        return ((r - 1).abs().min(1).values < 1e-3)
    assert bool((on_circle(y, 0.0, 0.0) | on_circle(y, 1.0, 0.5)).all())


def test_moons_draws_are_independent_and_even_is_torchdyns_layout():
    """By default every point is an independent draw of the law (a fair coin for the arc, a uniform angle), so two
    draws share no angles; ``even=true`` is torchdyn's layout: n // 2 evenly spaced angles on the outer arc and the
    rest on the inner, the same in every draw of n."""
    def angles(x, y):
        u = (x.double() + 1) / 3  # torchdyn's coordinates, noise 0: outer arc at (0, 0), inner at (1, 0.5)
        outer = torch.atan2(u[:, 1], u[:, 0])
        inner = torch.atan2(0.5 - u[:, 1], 1 - u[:, 0])
        return torch.where(y == 0, outer, inner)

    def draw_labelled(seed, **options):
        return DATASETS.build({"name": "moons", "noise": 0.0, **options}).sample_labelled(
            4000, torch.Generator().manual_seed(seed))

    a, b = angles(*draw_labelled(0)), angles(*draw_labelled(1))
    assert torch.isin(a.round(decimals=5), b.round(decimals=5)).float().mean() < 0.05  # chance coincidences only
    assert float(a.min()) >= -1e-6 and float(a.max()) <= math.pi + 1e-6
    assert torch.histc(a, bins=8, min=0, max=math.pi).div(4000).tolist() == pytest.approx([1 / 8] * 8, abs=0.02)
    inner_share = float(draw_labelled(0)[1].float().mean())
    assert inner_share != 0.5 and inner_share == pytest.approx(0.5, abs=0.03)  # a coin per point, not a split
    (xe, ye), (xf, yf) = draw_labelled(0, even=True), draw_labelled(1, even=True)
    even = torch.linspace(0, math.pi, 2000, dtype=torch.float64)
    for x, y in ((xe, ye), (xf, yf)):
        assert int(y.sum()) == 2000
        for arc in (0, 1):
            assert torch.allclose(angles(x, y)[y == arc].sort().values, even, atol=1e-5)


@pytest.mark.parametrize("name", ["checkerboard", "2spirals", "gaussian"])
def test_other_toys_are_2d_and_centred(name):
    x = draw(name)
    assert x.shape == (20_000, 2)
    assert x.mean(0).abs().max() < 0.1


def test_digits_scaled_and_split():
    train, test = Digits("train"), Digits("test")
    assert train.shape == (1, 8, 8) and train.data.shape[0] + test.data.shape[0] == 1797
    assert float(train.data.min()) == -1.0 and float(train.data.max()) == 1.0
    flat = lambda d: {tuple(r) for r in d.data.flatten(1).tolist()}  # noqa: E731
    assert len(flat(test) - flat(train)) > 0.9 * test.data.shape[0]  # held out (a few digits repeat exactly)


def test_source_takes_the_target_shape():
    src, tgt = build_pair("gaussian", "digits", None)
    assert src.shape == tgt.shape == (1, 8, 8)
    with pytest.raises(ConfigError, match="has shape"):
        build_pair("8gaussians", "digits", None)


def test_a_dataset_is_held_to_its_contract_before_training():
    """A shape that is not a tuple of sizes, or a first draw that is not a float tensor of (n, *shape), is refused
    naming the dataset, instead of a broadcasting error mid-training."""
    from flowkit.data import Dataset, register_dataset
    from flowkit.errors import ContractError

    @register_dataset("test_intdraw")
    class IntDraw(Dataset):
        shape = (2,)

        def sample(self, n, generator):
            return torch.randint(0, 3, (n, 2), generator=generator)

    @register_dataset("test_wrongdraw")
    class WrongDraw(Dataset):
        shape = (2,)

        def sample(self, n, generator):
            return torch.randn(n, 3, generator=generator)

    @register_dataset("test_listshape")
    class ListShape(Dataset):
        shape = [2]

        def sample(self, n, generator):
            return torch.randn(n, 2, generator=generator)

    with pytest.raises(ContractError, match=r"data.target: dataset IntDraw.sample\(2, generator\) gave torch.int64"):
        build_pair("gaussian", "test_intdraw", None)
    with pytest.raises(ContractError, match=r"gave torch.float32 of shape \(2, 3\); expected a float tensor of shape "
                                            r"\(2, 2\)"):
        build_pair("gaussian", "test_wrongdraw", None)
    with pytest.raises(ContractError, match=r"dataset ListShape has shape=\[2\]; expected a tuple"):
        build_pair("gaussian", "test_listshape", None)
    with pytest.raises(ContractError, match="data.source: dataset WrongDraw"):
        build_pair("test_wrongdraw", "8gaussians", None)


def test_user_arrays(tmp_path):
    arr = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    np.save(tmp_path / "a.npy", arr)
    torch.save(torch.from_numpy(arr), tmp_path / "a.pt")
    for file in ("a.npy", "a.pt"):
        src, tgt = build_pair("gaussian", "ignored", str(tmp_path / file))
        assert tgt.shape == (3,) and src.shape == (3,)
    bad = arr.copy()
    bad[5, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ConfigError, match="1 of 100 samples hold NaN"):
        build_pair("gaussian", "x", str(tmp_path / "nan.npy"))
    np.save(tmp_path / "flat.npy", arr[:, 0])
    with pytest.raises(ConfigError, match=r"expected an array of shape"):
        build_pair("gaussian", "x", str(tmp_path / "flat.npy"))
    np.save(tmp_path / "empty.npy", arr[:0])
    with pytest.raises(ConfigError, match=r"expected an array of shape"):
        build_pair("gaussian", "x", str(tmp_path / "empty.npy"))
    with pytest.raises(ConfigError, match="no such file"):
        build_pair("gaussian", "x", str(tmp_path / "missing.npy"))


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_arrays_that_would_run_code_are_refused(tmp_path, capfd):
    np.save(tmp_path / "obj.npy", np.array([Exploit()], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError, match="not a plain numeric .npy"):
        build_pair("gaussian", "x", str(tmp_path / "obj.npy"))
    with open(tmp_path / "obj.pt", "wb") as f:
        pickle.dump(Exploit(), f)
    with pytest.raises(ConfigError, match=r"obj.pt.* holds .*; refused \(loading never runs code from a file\)"):
        build_pair("gaussian", "x", str(tmp_path / "obj.pt"))
    assert "pwned" not in capfd.readouterr().out


def test_stream_batches_depend_only_on_seed_and_step():
    src, tgt = build_pair("gaussian", "8gaussians", None)
    a = iter(PairStream(src, tgt, 16, seed=3))
    batches = [next(a) for _ in range(5)]
    resumed = next(iter(PairStream(src, tgt, 16, seed=3, start=3)))
    assert torch.equal(resumed["x0"], batches[3]["x0"]) and torch.equal(resumed["x1"], batches[3]["x1"])
    assert step_seed(0, 1) != step_seed(1, 0)
    other_rank = next(iter(PairStream(src, tgt, 16, seed=3, rank=1)))
    assert not torch.equal(other_rank["x1"], batches[0]["x1"])


@pytest.mark.parametrize("labelled", [False, True])
def test_loader_processes_pair_each_batch_by_exact_ot_and_the_same_whatever_their_number(labelled):
    """data.workers: the stream solves the coupling in the DataLoader's processes; batch k (from a resumed
    start too) does not depend on how many processes drew it, and it is the exact OT pairing of the batch
    the plain stream draws (within each class when labelled)."""
    src, tgt = build_pair("gaussian", "8gaussians", None)
    coupling = COUPLINGS.build({"name": "ot"})

    def batches(workers, start=0, paired=True):
        stream = PairStream(src, tgt, 7, seed=3, start=start, labelled=labelled, coupling=coupling if paired else None)
        return list(itertools.islice(DataLoader(stream, batch_size=None, num_workers=workers), 6 - start))

    inline = batches(0)
    for other in (batches(1), batches(2), batches(2, start=3)):
        for a, b in zip(inline[-len(other):], other):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for paired, drawn in zip(inline, batches(0, paired=False)):
        assert torch.equal(paired["x0"], drawn["x0"])
        assert sorted(map(tuple, paired["x1"].tolist())) == sorted(map(tuple, drawn["x1"].tolist()))
        if not labelled:
            cost = float(((paired["x0"] - paired["x1"]) ** 2).sum())
            assert cost == pytest.approx(brute_force_optimum(drawn["x0"], drawn["x1"]), rel=1e-5)
        else:  # row i's partner is a target point of row i's class
            assert torch.equal(paired["y"], drawn["y"])
            source_row = [drawn["x1"].tolist().index(row) for row in paired["x1"].tolist()]
            assert torch.equal(drawn["y"][source_row], drawn["y"])


def test_digits_fd_uses_the_shipped_classifier_weights():
    from flowkit.metrics.digits_features import CLASSIFIER_ACCURACY, digits_classifier

    digits_classifier.cache_clear()
    first = digits_classifier()
    digits_classifier.cache_clear()
    second = digits_classifier()  # loaded from the package, not trained: the same weights every time
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    test = Digits("test")
    accuracy = float((first(test.data).argmax(1) == test.labels).float().mean())
    assert accuracy == pytest.approx(CLASSIFIER_ACCURACY, abs=1e-3) and accuracy > 0.95
    # FD of the held-out split against itself is 0; against the training split it is the finite-sample floor of
    # 297 images (measured 19.2 with the shipped weights, whatever the machine)
    assert test.quality(test.data, test.reference(10, torch.Generator())) == pytest.approx(0, abs=1e-6)
    assert test.quality(Digits("train").data, test.data) == pytest.approx(19.18, abs=0.05)


def test_datasets_own_their_classifiers():
    gaussians, board = DATASETS.build({"name": "8gaussians"}), DATASETS.build({"name": "checkerboard"})
    for data in (gaussians, board):
        x, y = data.sample_labelled(4000, torch.Generator().manual_seed(0))
        assert float((data.classify(x) == y).float().mean()) > 0.999
    assert DATASETS.build({"name": "2spirals"}).classify(torch.zeros(3, 2)) is None  # no classes, no classifier
