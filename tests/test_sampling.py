"""Solvers on dx/dt = a x (x(1) = e^a x(0)): orders of convergence, tolerances, NFE, bad names."""

import math

import pytest
import torch

from flowkit.errors import ConfigError
from flowkit.samplers import parse_sampler, sampler_spec
from flowkit.samplers.integrate import ADAPTIVE, solve, solve_trajectory

A = -1.3
ORDERS = {"euler": 1, "midpoint": 2, "heun3": 3, "rk4": 4}
CALLS_PER_STEP = {"euler": 1, "midpoint": 2, "heun3": 3, "rk4": 4}


class Counted:
    def __init__(self):
        self.calls = 0

    def __call__(self, x, t):
        assert t.shape == (x.shape[0],)  # solvers hand the model a (batch,) time
        self.calls += 1
        return A * x


def error(method, steps=None, **tol):
    x0 = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    x1, _ = solve(Counted(), x0, method=method, steps=steps, **tol)
    return float((x1 - x0 * math.exp(A)).abs().max())


@pytest.mark.parametrize("method", ORDERS)
def test_fixed_step_error_shrinks_at_the_method_order(method):
    observed = math.log2(error(method, steps=16) / error(method, steps=32))
    assert observed == pytest.approx(ORDERS[method], abs=0.15)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_methods_meet_their_tolerance(method):
    # rtol/atol bound each step's local error; the global error may be a small multiple of it
    assert error(method, rtol=1e-8, atol=1e-8) < 1e-5
    assert error(method, rtol=1e-8, atol=1e-8) < error(method, rtol=1e-3, atol=1e-3) + 1e-12


@pytest.mark.parametrize("method", [*ORDERS, *ADAPTIVE])
def test_nfe_counts_the_function_calls(method):
    f = Counted()
    x0 = torch.ones(3, 2, dtype=torch.float64)
    steps = 5 if method in ORDERS else None
    _, nfe = solve(f, x0, method=method, steps=steps)
    assert nfe == f.calls
    if method in ORDERS:
        assert nfe == CALLS_PER_STEP[method] * steps


def test_trajectory_returns_states_on_the_grid():
    x0 = torch.ones(4, 2, dtype=torch.float64)
    states, times, _ = solve_trajectory(Counted(), x0, method="dopri5", rtol=1e-9, atol=1e-9, points=11)
    assert states.shape == (11, 4, 2) and times.shape == (11,)
    torch.testing.assert_close(states[:, 0, 0], torch.exp(A * times), rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("spec,message", [
    ("rk5", "unknown sampler 'rk5'; valid: adaptive_heun, ancestral, bosh3, .*rk4"), ("euler", "needs a step count"),
    ("euler:0", "needs a step count"), ("dopri5:4", "takes no step count"),
    ("ddim:10:eta", "'eta' is not key=value"), ("ddim:10:etaa=1", "sampler 'ddim' has no option 'etaa'; .*eta"),
    ("ddim:10:eta=2", "eta=2.0 is out of range; expected 0 <= eta <= 1"), ("ddim:eta=1", "needs a step count"),
    ("em:10:scale=-1", "scale=-1.0 is out of range"), ("edm:10:churn=x", "sampler.churn='x': expected float"),
    ("euler:4:eta=1", "sampler 'euler' has no option 'eta'")])
def test_bad_solver_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_sampler(spec)


def test_a_spec_carries_options():
    assert sampler_spec("ddim:10:eta=0.5:seed=3") == ("ddim", 10, {"eta": 0.5, "seed": 3})
    assert sampler_spec("edm:18:churn=40:tmin=0.05:tmax=50:noise=1.003")[2] == {
        "churn": 40, "tmin": 0.05, "tmax": 50, "noise": 1.003}
    assert sampler_spec("em:100:denoise=false")[2] == {"denoise": False}
    assert sampler_spec("dopri5") == ("dopri5", None, {})
