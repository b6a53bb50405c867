"""Couplings: exact OT against brute force over permutations; sinkhorn's plan marginals; devices."""

import itertools

import pytest
import torch

from flowkit.couplings import COUPLINGS, pair_in_blocks, squared_cost


def brute_force_optimum(x0, x1):
    cost = squared_cost(x0, x1)
    n = cost.shape[0]
    return min(float(sum(cost[i, p[i]] for i in range(n))) for p in itertools.permutations(range(n)))


@pytest.mark.parametrize("seed", range(5))
def test_exact_ot_cost_equals_brute_force_and_beats_independent(seed):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(7, 2, generator=g, dtype=torch.float64), 3 * torch.randn(7, 2, generator=g, dtype=torch.float64)
    a, b = COUPLINGS.build({"name": "ot"})(x0, x1)
    ours = float(((a - b) ** 2).sum())
    assert ours == pytest.approx(brute_force_optimum(x0, x1), rel=1e-9)
    assert ours <= float(((x0 - x1) ** 2).sum()) + 1e-9
    # The exact plan is a permutation: every x1 is used exactly once, every x0 kept in place.
    assert torch.equal(a, x0)
    assert sorted(map(tuple, b.tolist())) == sorted(map(tuple, x1.tolist()))


def test_exact_ot_on_images_flattens_all_dimensions():
    x0, x1 = torch.randn(6, 1, 3, 3), torch.randn(6, 1, 3, 3)
    a, b = COUPLINGS.build({"name": "ot"})(x0, x1)
    assert b.shape == x1.shape
    assert float(((a - b) ** 2).sum()) == pytest.approx(brute_force_optimum(x0, x1), rel=1e-5)


def test_sinkhorn_plan_has_uniform_marginals_and_lowers_cost():
    x0, x1 = torch.randn(128, 2), torch.randn(128, 2) + 4
    coupling = COUPLINGS.build({"name": "sinkhorn", "reg": 0.05})
    plan = coupling.plan(x0, x1)
    torch.testing.assert_close(plan.sum(1), torch.full((128,), 1 / 128), rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(plan.sum(0), torch.full((128,), 1 / 128), rtol=1e-3, atol=1e-6)
    a, b = coupling(x0, x1)
    assert float(((a - b) ** 2).sum()) < float(((x0 - x1) ** 2).sum())


@pytest.mark.parametrize("block", [4, 5, 12])
def test_pairing_in_blocks_solves_each_block_exactly(block):
    g = torch.Generator().manual_seed(block)
    x, z = 3 * torch.randn(12, 2, generator=g, dtype=torch.float64), torch.randn(12, 2, generator=g, dtype=torch.float64)
    paired = pair_in_blocks(COUPLINGS.build({"name": "ot"}), x, z, block)
    for start in range(0, 12, block):
        rows = slice(start, start + block)
        # each block's rows of z are reordered among themselves, to that block's optimal assignment
        assert sorted(map(tuple, paired[rows].tolist())) == sorted(map(tuple, z[rows].tolist()))
        if block <= 5:
            cost = float(((x[rows] - paired[rows]) ** 2).sum())
            assert cost == pytest.approx(brute_force_optimum(x[rows], z[rows]), rel=1e-9)


def test_unequal_batches_are_refused():
    from flowkit.errors import ConfigError

    with pytest.raises(ValueError, match="equal size"):
        COUPLINGS.build({"name": "ot"})(torch.randn(4, 2), torch.randn(5, 2))
    with pytest.raises(ConfigError, match="reg=0.0 is out of range"):
        COUPLINGS.build({"name": "sinkhorn", "reg": 0.0})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["ot", "sinkhorn"])
def test_ot_couplings_keep_cuda_tensors_on_device(name):
    x0, x1 = torch.randn(64, 2, device="cuda"), torch.randn(64, 2, device="cuda")
    a, b = COUPLINGS.build({"name": name})(x0, x1)
    assert a.device == x0.device and b.device == x1.device


def test_exact_ot_samples_the_rows_of_a_plan_that_is_not_a_permutation(monkeypatch):
    """The network simplex returns a permutation (read by argmax); a plan with split rows is drawn from row
    by row, so every partner is a target point of positive mass in that row."""
    coupling = COUPLINGS.build({"name": "ot"})
    x0, x1 = torch.randn(4, 2), torch.arange(8.0).reshape(4, 2)
    split = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5]], dtype=torch.float64) / 4
    monkeypatch.setattr(coupling, "plan", lambda a, b: split)
    torch.manual_seed(0)
    partners = torch.stack([coupling(x0, x1)[1][:, 0] // 2 for _ in range(200)]).long()  # the partner's row
    assert set(partners[:, :2].unique().tolist()) == {0, 1} and set(partners[:, 2:].unique().tolist()) == {2, 3}
