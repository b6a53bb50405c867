"""Metrics against closed forms."""

import pytest
import torch

from flowkit.metrics.distances import frechet_distance, mmd2, sliced_w2, straightness, w2
from flowkit.samplers.integrate import solve_trajectory


def test_w2_of_a_set_with_itself_is_zero_and_of_a_shift_is_the_shift():
    x = torch.randn(500, 2, dtype=torch.float64)
    shift = torch.tensor([1.5, -2.0], dtype=torch.float64)
    assert w2(x, x) == pytest.approx(0.0, abs=1e-6)  # the square root of round-off
    # N(m1, S) vs N(m2, S): W2 = |m1 - m2|; for a translated empirical set it holds exactly
    assert w2(x, x + shift) == pytest.approx(float(shift.norm()), rel=1e-9)


def test_w2_of_two_gaussians_at_large_n_approaches_the_closed_form():
    """W2(N(0, I), N(m, s^2 I)) = sqrt(|m|^2 + d (1 - s)^2), approached from above by samples."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 2, generator=g, dtype=torch.float64)
    y = torch.tensor([3.0, 0.0], dtype=torch.float64) + 0.5 * torch.randn(2000, 2, generator=g, dtype=torch.float64)
    closed = (9.0 + 2 * 0.25) ** 0.5
    assert closed - 0.01 < w2(x, y) < closed + 0.1


def test_sliced_w2_of_a_shift_in_1d_is_exact():
    x = torch.randn(300, 1, dtype=torch.float64)
    assert sliced_w2(x, x + 2.0, projections=4) == pytest.approx(2.0, rel=1e-9)
    assert sliced_w2(x, x) == pytest.approx(0.0, abs=1e-12)


def test_mmd_is_near_zero_for_one_law_and_positive_for_two():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(800, 2, generator=g), torch.randn(800, 2, generator=g)
    assert abs(mmd2(x, y)) < 0.005
    assert mmd2(x, y + 1.0) > 0.1


def test_straightness_is_zero_for_straight_paths_and_positive_for_curved():
    x0 = torch.randn(64, 2, dtype=torch.float64)
    target = torch.tensor([2.0, 1.0], dtype=torch.float64)

    def straight(x, t):  # a constant field: every path is a straight line at constant speed
        return target.expand_as(x)

    def curved(x, t):  # rotation: paths are arcs
        return torch.stack([-x[:, 1], x[:, 0]], 1)

    for fn, expect_zero in ((straight, True), (curved, False)):
        states, times, _ = solve_trajectory(fn, x0, method="rk4", steps=200)
        value = straightness(fn, states, times)
        assert (value < 1e-20) if expect_zero else (value > 0.1)


def test_frechet_distance_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20_000, 3, generator=g, dtype=torch.float64)
    b = 2.0 * torch.randn(20_000, 3, generator=g, dtype=torch.float64) + 1.0
    # ||mu||^2 + tr(I + 4I - 2 * 2I) = 3 + 3
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
