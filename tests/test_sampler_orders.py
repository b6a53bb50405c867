"""Every sampler against the exact flow of Gaussian data (tests/gaussian_model.py) on every built-in path, each on
its default grid: deterministic samplers converge at their order, stochastic ones hit the data's mean and
covariance, and inversion followed by generation returns the data."""

import pytest
import torch

from flowkit.errors import ConfigError
from flowkit.methods import METHODS
from flowkit.paths import PATHS
from flowkit.samplers import SAMPLERS, invert_with, sample_with
from flowkit.samplers.base import build_sampler, deterministic
from flowkit.timesteps import TIME_SAMPLERS
from tests.gaussian_model import MU, S, GaussianVelocity, exact_inverse, exact_map

PATH_NAMES = ["rectified", "cosine", "vp"]


def setup(name):
    path = PATHS.build({"name": name})
    method = METHODS.build({"name": "cfm"}, path=path, time_sampler=TIME_SAMPLERS.build({"name": "uniform"}))
    return path, method, GaussianVelocity(path), None  # each sampler on its default grid (flowkit.samplers.grids)


def error(name, spec, x0):
    path, method, net, grid = setup(name)
    x1, _ = sample_with(method, net, path, x0, spec, grid=grid)
    return float((x1 - exact_map(path, x0)).norm(dim=1).max())


@pytest.mark.parametrize("name", PATH_NAMES)
@pytest.mark.parametrize("sampler,order", [("euler", 1), ("ddim", 1), ("heun", 2), ("dpm2", 2), ("dpm++2m", 2),
                                           ("dpm++3m", 3), ("edm", 2)])
def test_deterministic_samplers_converge_at_their_order(name, sampler, order):
    x0 = torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # 64 -> 128: the multistep solvers' errors on their graded default grid are in their asymptotic range from 64 on
    coarse, fine = error(name, f"{sampler}:64", x0), error(name, f"{sampler}:128", x0)
    ratio = coarse / fine
    assert 0.75 * 2**order < ratio < 1.35 * 2**order, (coarse, fine, ratio)
    assert fine < (0.1 if order == 1 else 1e-2)
    if order == 3:  # and in absolute terms ahead of the second-order multistep at the same step count
        assert fine < 0.75 * error(name, "dpm++2m:128", x0)


@pytest.mark.parametrize("name", PATH_NAMES)
@pytest.mark.parametrize("spec,steps", [("ddim:{}:eta=1", 200), ("ancestral:{}", 200), ("ddim:{}:eta=0.5", 200),
                                        ("em:{}", 1000), ("pc:{}", 300), ("edm:{}:churn=30", 100)])
def test_stochastic_samplers_reach_the_data_distribution(name, spec, steps):
    path, method, net, grid = setup(name)
    n = 20_000
    x0 = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x1, _ = sample_with(method, net, path, x0, spec.format(steps), grid=grid)
    assert not torch.allclose(x1, exact_map(path, x0), atol=1e-2)  # the noise was used
    mean_tol = 5 * S / n**0.5 + 0.02
    torch.testing.assert_close(x1.mean(0), MU, atol=mean_tol, rtol=0)
    cov = torch.cov(x1.T)
    torch.testing.assert_close(cov, S**2 * torch.eye(2, dtype=torch.float64), atol=0.05 * S**2 + 0.01, rtol=0)


@pytest.mark.parametrize("name", PATH_NAMES)
@pytest.mark.parametrize("spec,tol", [("ddim:400", 5e-2), ("heun:64", 1e-2), ("dpm2:64", 1e-2),
                                      ("dpm++2m:128", 1e-2), ("dpm++3m:128", 1e-2), ("edm:64", 1e-2), ("dopri5", 1e-4)])
def test_inversion_then_generation_returns_the_data(name, spec, tol):
    path, method, net, grid = setup(name)
    x1 = MU + S * torch.randn(256, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    z, nfe = invert_with(method, net, path, x1, spec, grid=grid, rtol=1e-8, atol=1e-8)
    assert nfe > 0
    torch.testing.assert_close(z, exact_inverse(path, x1), atol=tol, rtol=0)
    back, _ = sample_with(method, net, path, z, spec, grid=grid, rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(back, x1, atol=tol, rtol=0)


def test_the_samplers_error_messages_offer_as_deterministic_are_registered_and_deterministic():
    path, method, _, _ = setup("rectified")
    offered = deterministic(path).split(", ")
    assert {"euler", "heun", "rk4", "dopri5", "ddim", "dpm2", "dpm++2m", "dpm++3m", "edm"} <= set(offered)
    assert not {"em", "pc", "ancestral", "renoise"} & set(offered)
    for name in offered:
        sampler, _ = build_sampler(method, path, name if SAMPLERS.get(name).adaptive else f"{name}:4")
        assert type(sampler).ode and not sampler.stochastic, name


def test_stochastic_samplers_cannot_invert():
    path, method, net, _ = setup("rectified")
    with pytest.raises(ConfigError, match="sampler 'em:10' cannot invert"):
        invert_with(method, net, path, torch.zeros(2, 2), "em:10")
    invert_with(method, net, path, torch.zeros(2, 2), "ddim:10:eta=0")  # eta = 0 is deterministic


@pytest.mark.parametrize("name,spec,nfe", [("rectified", "dpm2:10", 18), ("vp", "dpm2:10", 19),
                                           ("rectified", "edm:10", 18), ("vp", "edm:10", 19),
                                           ("rectified", "dpm++2m:10", 10), ("rectified", "dpm++3m:10", 11),
                                           ("vp", "dpm++3m:10", 11), ("rectified", "pc:10", 20),
                                           ("rectified", "pc:10:corrector_steps=2", 30), ("cosine", "em:10", 10)])
def test_nfe_is_counted_per_network_call(name, spec, nfe):
    path, method, _, _ = setup(name)
    calls = []
    net = GaussianVelocity(path)
    net.register_forward_hook(lambda *a: calls.append(1))
    _, counted = sample_with(method, net, path, torch.randn(4, 2, dtype=torch.float64), spec)
    assert counted == len(calls) == nfe


def test_ddim_with_eta_is_reproducible_by_its_seed():
    path, method, net, _ = setup("rectified")
    x0 = torch.randn(16, 2, dtype=torch.float64)
    a, _ = sample_with(method, net, path, x0, "ddim:8:eta=1:seed=3")
    b, _ = sample_with(method, net, path, x0, "ddim:8:eta=1:seed=3")
    c, _ = sample_with(method, net, path, x0, "ddim:8:eta=1:seed=4")
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
