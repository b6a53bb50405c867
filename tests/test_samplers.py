"""The sampler contract: registered samplers, grids, honest names and NFE, and which method may use which."""

import pytest
import torch

from flowkit.conditioning import Cond
from flowkit.errors import ConfigError, ContractError
from flowkit.grids import GRIDS, grid_times, register_grid
from flowkit.methods import METHODS
from flowkit.paths import PATHS
from flowkit.samplers import SAMPLERS, Predictor, Sampler, register_sampler, sample_with, supports, why_not
from flowkit.samplers.ddim import DDIM
from flowkit.timesteps import TIME_SAMPLERS

RECTIFIED = PATHS.build({"name": "rectified"})


def cfm(path=RECTIFIED):
    return METHODS.build({"name": "cfm"}, path=path, time_sampler=TIME_SAMPLERS.build({"name": "uniform"}))


class Counted(torch.nn.Module):
    """v(x, t) = a x: counts its calls and the batch each saw."""

    def __init__(self, a=-0.7):
        super().__init__()
        self.a, self.calls, self.batches = a, 0, []

    def forward(self, x, t, cond=None, w=None):
        assert t.shape == (x.shape[0],)
        self.calls += 1
        self.batches.append(x.shape[0])
        return self.a * x


@pytest.mark.parametrize("spec,per_step", [("euler:6", 1), ("midpoint:6", 2), ("heun3:6", 3), ("rk4:6", 4),
                                           ("ddim:6", 1)])
def test_fixed_step_samplers_spend_their_stages_per_step_counted_by_the_network(spec, per_step):
    net = Counted()
    _, nfe = sample_with(cfm(), net, RECTIFIED, torch.randn(5, 2), spec)
    assert nfe == net.calls == per_step * 6


@pytest.mark.parametrize("name", ["dopri5", "bosh3", "adaptive_heun"])
def test_adaptive_samplers_report_the_calls_they_made(name):
    net = Counted()
    _, nfe = sample_with(cfm(), net, RECTIFIED, torch.randn(5, 2), name)
    assert nfe == net.calls > 2


def test_guidance_is_one_batched_call_per_nfe():
    net = Counted()
    cond = Cond(torch.zeros(5, dtype=torch.long), 2.0, 3)
    _, nfe = sample_with(cfm(), net, RECTIFIED, torch.randn(5, 2), "euler:4", cond=cond)
    assert nfe == net.calls == 4 and net.batches == [10] * 4  # [conditional; null] in one call


def test_ddim_is_euler_on_the_rectified_path_and_not_on_a_curved_one():
    x0 = torch.randn(64, 2, dtype=torch.float64)
    net = lambda x, t: torch.sin(x) * (1 + t[:, None])  # noqa: E731
    a, _ = sample_with(cfm(), net, RECTIFIED, x0, "ddim:5")
    b, _ = sample_with(cfm(), net, RECTIFIED, x0, "euler:5")
    torch.testing.assert_close(a, b)
    cosine = PATHS.build({"name": "cosine"})
    c, _ = sample_with(cfm(cosine), net, cosine, x0, "ddim:5")
    d, _ = sample_with(cfm(cosine), net, cosine, x0, "euler:5")
    assert (c - d).abs().max() > 1e-3


def test_a_grid_reaches_the_sampler_and_a_bad_grid_is_refused():
    seen = []

    class Recording(Sampler):
        def __call__(self, model, x0, ts, *, cond=None):
            seen.append(ts.tolist())
            return x0, model.nfe

    register_sampler("test_recording")(Recording)

    @register_grid("test_halves")
    def halves(path, steps):
        return torch.tensor([0.0] + [1 - 0.5 ** k for k in range(1, steps)] + [1.0], dtype=torch.float64)

    sample_with(cfm(), Counted(), RECTIFIED, torch.randn(2, 2), "test_recording:3", grid="test_halves")
    assert seen == [[0.0, 0.5, 0.75, 1.0]]

    @register_grid("test_backwards")
    def backwards(path, steps):
        return torch.linspace(1, 0, steps + 1)

    with pytest.raises(ContractError, match="grid 'test_backwards' gave .* increasing times from 0 to 1"):
        grid_times("test_backwards", RECTIFIED, 3)
    with pytest.raises(ConfigError, match="unknown grid 'logsnrr'; valid: .*uniform"):
        GRIDS.get("logsnrr")


def test_registration_holds_samplers_and_grids_to_their_contracts():
    with pytest.raises(ContractError, match="does not derive from flowkit.samplers.Sampler"):
        register_sampler("test_plain")(lambda model, x0, ts, cond=None: (x0, 0))
    with pytest.raises(ContractError, match="is not a function of \\(path, steps\\)"):
        register_grid("test_one_arg")(lambda steps: torch.linspace(0, 1, steps + 1))


def test_which_samplers_a_method_supports_and_why_not():
    ct = METHODS.build({"name": "ct"}, path=RECTIFIED, time_sampler=TIME_SAMPLERS.build({"name": "uniform"}),
                       total_steps=10)
    assert supports(cfm(), "dopri5") and supports(cfm(), "ddim") and not supports(cfm(), "renoise")
    assert supports(ct, "renoise") and not supports(ct, "euler")
    assert why_not(cfm(), "cfm", "renoise") == ("sampler 'renoise' is not one of method 'cfm''s; it samples with any "
                                               "ODE sampler and: none")
    assert why_not(ct, "ct", "euler") == ("sampler 'euler' solves the velocity ODE, which method 'ct' does not "
                                          "define; its samplers: renoise")
    assert SAMPLERS.get("renoise").ode is False and SAMPLERS.get("euler").ode is True


def test_a_predictor_converts_what_the_network_predicts():
    x, t = torch.randn(8, 2, dtype=torch.float64), torch.rand(8, dtype=torch.float64) * 0.9 + 0.05
    x1 = torch.randn(8, 2, dtype=torch.float64)
    model = Predictor(lambda x_, t_: x1, "x1", RECTIFIED)
    v = model.velocity(x, t)
    torch.testing.assert_close(v, (x1 - x) / (1 - t[:, None]))  # rectified: v = (x1 - x_t) / (1 - t)
    x0_hat, x1_hat = model.endpoints(x, t)
    torch.testing.assert_close(x1_hat, x1)
    torch.testing.assert_close(RECTIFIED.sample(x0_hat, x1_hat, t), x)
    assert model.nfe == 2


def test_the_ddim_sampler_counts_one_call_per_step():
    net = Counted()
    _, nfe = DDIM()(Predictor(net, "velocity", RECTIFIED), torch.randn(3, 2), torch.linspace(0, 1, 8))
    assert nfe == net.calls == 7
