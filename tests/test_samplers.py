"""The sampler contract: registered samplers, grids, honest names and NFE, and which method may use which."""

import math

import pytest
import torch

from flowkit.conditioning import Cond
from flowkit.errors import ConfigError, ContractError
from flowkit.samplers.grids import GRIDS, grid_times, register_grid
from flowkit.methods import METHODS
from flowkit.paths import PATHS
from flowkit.samplers import SAMPLERS, Predictor, Sampler, grid_of, register_sampler, sample_with, supports, why_not
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

    def backwards(path, steps):
        return torch.linspace(1, 0, steps + 1)

    with pytest.raises(ContractError, match="grid 'test_backwards' gave .* increasing times from 0 to 1"):
        register_grid("test_backwards")(backwards)  # tried at registration on 1, 3 and 8 steps

    @register_grid("test_odd_five")
    def odd_five(path, steps):  # right for the steps registration tries, wrong for 5: caught where used
        return torch.linspace(1, 0, steps + 1) if steps == 5 else torch.linspace(0, 1, steps + 1)

    with pytest.raises(ContractError, match="grid 'test_odd_five' gave .* increasing times from 0 to 1"):
        grid_times("test_odd_five", RECTIFIED, 5)
    with pytest.raises(ConfigError, match="unknown grid 'logsnrr'; valid: .*uniform"):
        GRIDS.get("logsnrr")


def test_registration_holds_samplers_and_grids_to_their_contracts():
    with pytest.raises(ContractError, match="does not derive from flowkit.samplers.Sampler"):
        register_sampler("test_plain")(lambda model, x0, ts, cond=None: (x0, 0))
    with pytest.raises(ContractError, match="is not a function of \\(path, steps\\)"):
        register_grid("test_one_arg")(lambda steps: torch.linspace(0, 1, steps + 1))

    class Silent(Sampler):  # registers nothing it can do: its use would be a NotImplementedError mid-run
        ode = True

    with pytest.raises(ContractError, match="Silent defines no __call__"):
        register_sampler("test_silent")(Silent)

    class Typo(Sampler):
        stochastc = True  # one slip from a declaration: it would stay False without a word

        def __call__(self, model, x0, ts, *, cond=None):
            return x0, 0

    with pytest.raises(ContractError, match="declares 'stochastc'.*did you mean 'stochastic'"):
        register_sampler("test_typo")(Typo)

    class NoGrid(Sampler):
        default_grid = None  # would fail only at the first sampling call

        def __call__(self, model, x0, ts, *, cond=None):
            return x0, 0

    with pytest.raises(ContractError, match="default_grid must name a grid .* not None"):
        register_sampler("test_no_grid")(NoGrid)


def test_a_call_that_names_no_grid_runs_on_the_samplers_default_grid():
    seen = []

    class Graded(Sampler):
        default_grid = "shift:2"

        def __call__(self, model, x0, ts, *, cond=None):
            seen.append(ts.tolist())
            return x0, model.nfe

    register_sampler("test_graded_default")(Graded)
    x0 = torch.randn(2, 2, dtype=torch.float64)
    for grid in (None, "", "shift:2", "uniform"):
        sample_with(cfm(), Counted(), RECTIFIED, x0, "test_graded_default:4", grid=grid)
    shifted = grid_times("shift:2", RECTIFIED, 4).tolist()
    assert seen == [shifted, shifted, shifted, [0.0, 0.25, 0.5, 0.75, 1.0]]
    assert grid_of("test_graded_default:4", None) == "shift:2" and grid_of("euler:4", None) == "uniform"
    assert grid_of("dpm2:4", "logsnr") == "logsnr" and grid_of("dopri5", None) is None  # adaptive: no grid
    assert {name: SAMPLERS.get(name).default_grid for name in ("dpm2", "dpm++2m", "edm", "dpm++3m", "heun")} == {
        "dpm2": "graded", "dpm++2m": "graded", "edm": "graded", "dpm++3m": "graded", "heun": "uniform"}


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


def test_the_built_in_grids_follow_their_formulas():
    import math
    vp = PATHS.build({"name": "vp"})
    for path in (RECTIFIED, vp):
        ts = grid_times("logsnr", path, 8)
        lam = path.log_snr(ts[1:-1])
        steps = lam[1:] - lam[:-1]
        torch.testing.assert_close(steps, steps.mean().expand(6), rtol=1e-9, atol=1e-9)  # uniform in log-SNR inside
        assert ts[0] == 0 and ts[-1] == 1
        # the ends of the span are sigma/alpha = 80 and 0.002, or the path's own where narrower
        lo = max(float(path.log_snr(torch.zeros(1, dtype=torch.float64))), -math.log(80))
        torch.testing.assert_close(float(lam[0] - steps.mean()), lo, rtol=0, atol=1e-9)
        torch.testing.assert_close(float(lam[-1] + steps.mean()), -math.log(0.002), rtol=0, atol=1e-9)
    ts = grid_times("karras", RECTIFIED, 6)
    ratio = (RECTIFIED.sigma(ts) / RECTIFIED.alpha(ts))[1:-1]  # rectified: sigma/alpha = (1 - t) / t
    k = torch.arange(1, 6, dtype=torch.float64) / 6
    expected = (80 ** (1 / 7) + k * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    torch.testing.assert_close(ratio, expected, rtol=1e-9, atol=0)
    ratio3 = (RECTIFIED.sigma(grid_times("karras:3", RECTIFIED, 6)) / RECTIFIED.alpha(grid_times("karras:3", RECTIFIED, 6)))
    torch.testing.assert_close(ratio3[1:-1], (80 ** (1 / 3) + k * (0.002 ** (1 / 3) - 80 ** (1 / 3))) ** 3, rtol=1e-9,
                               atol=0)
    noise = 1 - torch.linspace(0, 1, 5, dtype=torch.float64)
    torch.testing.assert_close(1 - grid_times("shift", RECTIFIED, 4), 3 * noise / (1 + 2 * noise))
    torch.testing.assert_close(1 - grid_times("shift:6", vp, 4), 6 * noise / (1 + 5 * noise))
    torch.testing.assert_close(grid_times("shift:1", vp, 4), torch.linspace(0, 1, 5, dtype=torch.float64))
    # graded: uniform steps but over the outer 10% of u at each end, where t grows as u^p, mirrored at t=1
    uniform = torch.linspace(0, 1, 41, dtype=torch.float64)
    torch.testing.assert_close(grid_times("graded:1", vp, 40), uniform)
    for p in (2, 3):
        ts = grid_times(f"graded:{p}", RECTIFIED, 40)  # u = k / 40: the first 4 steps are the graded share
        torch.testing.assert_close(ts[1:5] / ts[1], torch.arange(1, 5, dtype=torch.float64) ** p)
        gaps = ts[1:] - ts[:-1]
        torch.testing.assert_close(gaps[4:36], gaps[4:5].expand(32))  # uniform inside
        torch.testing.assert_close(1 - ts.flip(0), ts)  # symmetric
        # the density in u is continuous at the share's edge: 1 inside, (u / e)^(p - 1) at the end, scaled alike
        torch.testing.assert_close(float(gaps[3]), float(gaps[4]) * float((3.5 / 4) ** (p - 1)), rtol=0.05, atol=0)
    torch.testing.assert_close(grid_times("graded", RECTIFIED, 40), grid_times("graded:2", RECTIFIED, 40))
    # below 32 steps the share shrinks with the step count (16 steps: 5% of u, less than one step), nearly uniform
    gaps = grid_times("graded", RECTIFIED, 16).diff()
    torch.testing.assert_close(gaps[1:15], gaps[1:2].expand(14))
    assert 0.5 * gaps[1] < gaps[0] < gaps[1] and torch.isclose(gaps[0], gaps[15])


def test_grid_parameters_are_checked():
    with pytest.raises(ConfigError, match="grid 'uniform:2': 'uniform' takes no parameter"):
        grid_times("uniform:2", RECTIFIED, 4)
    with pytest.raises(ConfigError, match="the parameter after ':' must be a finite number, e.g. 'shift:3'"):
        grid_times("shift:x", RECTIFIED, 4)
    with pytest.raises(ConfigError, match="the shift must be > 0"):
        grid_times("shift:-1", RECTIFIED, 4)
    with pytest.raises(ConfigError, match="grid graded:0.5: the grading power p must be >= 1"):
        grid_times("graded:0.5", RECTIFIED, 4)

    @register_grid("test_power")
    def power(path, steps, p=2.0):
        return torch.linspace(0, 1, steps + 1, dtype=torch.float64) ** p

    torch.testing.assert_close(grid_times("test_power:3", RECTIFIED, 2), torch.tensor([0, 0.125, 1], dtype=torch.float64))
    with pytest.raises(ContractError, match="at most one more parameter that has a default"):
        register_grid("test_two_more")(lambda path, steps, a=1, b=2: None)


def test_log_snr_and_its_inverse_on_every_path():
    t = torch.tensor([0.0, 1e-4, 0.3, 0.7, 0.9999, 1.0], dtype=torch.float64)
    for name in PATHS.names():
        path = PATHS.build({"name": name})
        lam = path.log_snr(t)
        assert (lam[1:] > lam[:-1]).all()
        torch.testing.assert_close(path.time_at_log_snr(lam), t, rtol=0, atol=1e-12)
    assert RECTIFIED.log_snr(torch.tensor([0.0, 1.0])).tolist() == [-math.inf, math.inf]
    low, high = RECTIFIED.time_at_log_snr(torch.tensor([-1e9, 1e9])).tolist()
    assert 0 <= low < 1e-15 and high == 1.0
    vp = PATHS.build({"name": "vp"})  # lambda(0) is finite there: anything below it is t = 0
    assert vp.time_at_log_snr(torch.tensor([-7.0])).tolist() == [0.0]


@pytest.mark.parametrize("path_name", ["rectified", "vp"])
def test_every_fixed_step_sampler_says_its_nfe_before_it_runs(path_name):
    """Sampler.nfe(steps), the planned cost evaluations show and MAX_NFE checks, bounds the count (a step that
    touches an end of the path may take fewer: at most the two end steps' worth)."""
    from flowkit.methods import METHODS
    from flowkit.paths import PATHS
    from flowkit.samplers import SAMPLERS, build_sampler, sample_with
    from flowkit.timesteps import TIME_SAMPLERS
    from tests.gaussian_model import GaussianVelocity

    path = PATHS.build({"name": path_name})
    method = METHODS.build({"name": "cfm"}, path=path, time_sampler=TIME_SAMPLERS.build({"name": "uniform"}))
    net = GaussianVelocity(path)
    checked = []
    for name, factory in SAMPLERS.items():
        if factory.adaptive or not factory.ode or factory.__module__.startswith("tests"):  # units other tests add
            continue
        for steps in (1, 2, 3, 5, 8):
            sampler, _ = build_sampler(method, path, f"{name}:{steps}")
            planned = sampler.nfe(steps)
            _, counted = sample_with(method, net, path, torch.randn(4, 2), f"{name}:{steps}")
            assert planned is not None and counted <= planned <= counted + 2 * planned // steps, (name, steps)
        checked.append(name)
    assert {"euler", "heun", "rk4", "ddim", "dpm2", "dpm++3m", "edm", "em", "pc"} <= set(checked)
