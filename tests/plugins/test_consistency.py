"""Consistency models: the exact boundary, the CD target, the N(k) and mu(k) formulas, the target EMA."""

import math

import pytest
import torch

from flowkit.config.build import load_run
from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.errors import ConfigError
from flowkit.methods import METHODS
from flowkit.metrics.distances import w2
from flowkit.models import MODELS
from flowkit.paths import PATHS
from flowkit.timesteps import TIME_SAMPLERS
from flowkit.training.loop import train
from flowkit.samplers import sample_with
from flowkit.plugins.consistency.method import consistency_function, teacher_step
from flowkit.plugins.consistency.schedule import discretisation, target_decay
from tests.helpers import tiny


RECTIFIED = PATHS.build({"name": "rectified"})


def build(name, total_steps=100, **options):
    return METHODS.build({"name": name, **options}, path=PATHS.build({"name": "rectified"}),
                         time_sampler=TIME_SAMPLERS.build({"name": "uniform"}), data_shape=(2,),
                         total_steps=total_steps)


@pytest.mark.parametrize("seed", range(3))
def test_the_boundary_holds_exactly_for_any_network(seed):
    torch.manual_seed(seed)
    net = MODELS.build({"name": "mlp", "width": 16}, data_shape=(2,))
    for p in net.parameters():
        torch.nn.init.normal_(p, std=3.0)  # wild outputs
    x = torch.randn(64, 2) * 10
    assert torch.equal(consistency_function(net, x, torch.ones(64)), x)


def test_ict_schedule_matches_its_formula():
    # K = 10000, s0 = 10, s1 = 1280: K' = floor(10000 / (log2 128 + 1)) = 1250; N doubles every 1250 steps
    values = [discretisation("ict", k, 10_000, 10, 1280) for k in (0, 1249, 1250, 2500, 3750, 8749, 8750, 9999)]
    assert values == [11, 11, 21, 41, 81, 641, 1281, 1281]


def test_ct_schedule_matches_its_formula():
    # N(k) = ceil(sqrt(k/K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1 with s0 = 2, s1 = 150, K = 100
    assert discretisation("ct", 0, 100, 2, 150) == 2
    assert discretisation("ct", 50, 100, 2, 150) == 107  # sqrt(11402.5) = 106.78
    assert discretisation("ct", 100, 100, 2, 150) == 151
    assert discretisation("constant", 7, 100, 2, 32) == 33


def test_target_decay_matches_its_formula():
    assert target_decay("ct", 0.9, 2, 10) == pytest.approx(math.exp(2 * math.log(0.9) / 10))
    assert target_decay("constant", 0.95, 2, 33) == 0.95
    assert target_decay("ict", 0.0, 10, 1281) == 0.0


def test_the_target_network_is_an_ema_of_the_online_one_updated_after_each_step_not_in_the_loss():
    method = build("ct", schedule="constant", s0=2, s1=8, mu0=0.9, distance="l2")
    torch.manual_seed(0)
    model = MODELS.build({"name": "mlp", "width": 16}, data_shape=(2,))
    with pytest.raises(RuntimeError, match="setup"):
        method.target_network(model)  # made in setup, never as a side effect of the loss
    method.setup(model)
    target = method.target_network(model)
    assert target is not model and all(not p.requires_grad for p in target.parameters())
    before = [p.clone() for p in target.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    batch = {"x0": torch.randn(8, 2), "x1": torch.randn(8, 2), "step": 3}
    method.loss(model, batch)
    assert all(torch.equal(a, b) for a, b in zip(before, target.parameters()))  # the loss has no side effects
    method.after_step(model, 1)
    for old, new, online in zip(before, target.parameters(), model.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * online)
    for resumed_first in (True, False):  # Lightning restores state before or after setup, by strategy
        restored = build("ct", schedule="constant", s0=2, s1=8, mu0=0.9)
        fresh = MODELS.build({"name": "mlp", "width": 16}, data_shape=(2,))
        if resumed_first:
            restored.load_state_dict(method.state_dict())
            restored.setup(fresh)
        else:
            restored.setup(fresh)
            restored.load_state_dict(method.state_dict())
        assert all(torch.equal(a, b) for a, b in zip(restored.target_network(fresh).parameters(), target.parameters()))


def test_with_mu0_zero_the_target_is_the_online_network_under_stop_gradient():
    method = build("ct")
    model = MODELS.build({"name": "mlp", "width": 16}, data_shape=(2,))
    assert method.target_network(model) is model and method.state_dict() == {}
    loss = method.loss(model, {"x0": torch.randn(8, 2), "x1": torch.randn(8, 2), "step": 0})["loss"]
    loss.mean().backward()  # the gradient flows through the online branch only
    assert all(p.grad is not None for p in model.parameters())


def test_the_distances_match_their_formulas():
    a, b = torch.tensor([[3.0, 4.0], [1.0, 1.0]]), torch.zeros(2, 2)
    torch.testing.assert_close(build("ct", distance="l2").d(a, b), torch.tensor([12.5, 1.0]))
    c = 0.00054 * math.sqrt(2)  # iCT's constant for 2 dimensions
    torch.testing.assert_close(build("ct").d(a, b), torch.tensor([math.sqrt(25 + c * c) - c, math.sqrt(2 + c * c) - c]))
    torch.testing.assert_close(build("ct", huber_c=3.0).d(a, b), torch.tensor([math.sqrt(34) - 3, math.sqrt(11) - 3]))


def test_ct_neighbours_are_one_grid_step_apart_on_the_same_pair():
    method = build("ct", schedule="constant", s0=2, s1=16)
    x1 = torch.randn(512, 2)
    t, t_next = method.neighbours(x1, 0)
    torch.testing.assert_close(t_next - t, torch.full_like(t, 1 / 16))
    assert float(t.min()) >= 0 and float(t_next.max()) <= 1
    x0 = torch.randn(512, 2)
    torch.testing.assert_close(method.neighbour(x0, x1, None, t, t_next), t_next[:, None] * x1 + (1 - t_next[:, None]) * x0)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("cd-teacher")
    return train(apply_overrides(load_recipe("rectified"), tiny(root, "optim.ema_decay=0.9", steps=300))).run_dir


@pytest.mark.parametrize("solver", ["heun", "euler"])
def test_the_cd_target_is_one_teacher_solver_step(teacher, solver):
    method = build("cd", teacher=str(teacher), teacher_solver=solver)
    net = method.teacher.on(torch.device("cpu"))
    x_t, t = torch.randn(64, 2), torch.rand(64) * 0.9
    t_next = t + 0.1
    with torch.no_grad():
        v = net(x_t, t)
        euler = x_t + 0.1 * v
        expected = euler if solver == "euler" else x_t + 0.05 * (v + net(euler, t_next))
    torch.testing.assert_close(method.neighbour(None, None, x_t, t, t_next), expected)
    torch.testing.assert_close(teacher_step(net, x_t, t, t_next, solver), expected)


def test_a_consistency_model_refuses_ode_solvers_before_training(tmp_path):
    with pytest.raises(ConfigError, match="sampler 'dopri5' solves the velocity ODE, which method 'ct' does not "
                                          "define; its samplers: renoise"):
        sample_with(build("ct"), lambda x, t: x, RECTIFIED, torch.zeros(4, 2), "dopri5", method_name="ct")
    with pytest.raises(ConfigError, match="sampler 'dopri5' .* method 'ct' .*its samplers: renoise"):
        train(apply_overrides(load_recipe("ct"), tiny(tmp_path, "eval.compare=[dopri5]")))
    assert not (tmp_path / "runs").exists()


def test_multistep_sampling_of_an_exact_consistency_function_returns_the_data():
    mu = torch.tensor([3.0, -2.0])
    net = lambda x, t: (mu - x) / (1 - t[:, None]).clamp_min(1e-12)  # noqa: E731  (f = mu everywhere)
    x0 = torch.randn(32, 2)
    for steps in (1, 2, 5):
        x, nfe = sample_with(build("ct"), net, PATHS.build({"name": "cosine"}), x0, f"renoise:{steps}")
        torch.testing.assert_close(x, mu.expand(32, 2))
        assert nfe == steps


def test_ot_renoising_keeps_an_ot_trained_consistency_function_on_its_training_distribution():
    # 1-D, N(0, 1) -> N(mu, s^2): the OT pairs are x1 = mu + s x0, and the exact consistency function of their
    # interpolants x_t = (1 - t) x0 + t x1 is f(x_t, t) = mu + s (x_t - t mu) / (1 - t + t s).
    mu, s = 2.0, 3.0
    f = lambda x, t: (mu + s * (x - t[:, None] * mu) / (1 - t[:, None] + t[:, None] * s))  # noqa: E731
    net = lambda x, t: (f(x, t) - x) / (1 - t[:, None]).clamp_min(1e-12)  # noqa: E731  (consistency_function = f)
    x0 = torch.randn(2000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = mu + s * x0
    for block in (2000, 250):
        method = build("ct", renoise="ot", renoise_block=block)
        for steps in (2, 4):
            x, nfe = sample_with(method, net, RECTIFIED, x0, f"renoise:{steps}")
            assert nfe == steps
            # OT-paired noise re-noises onto the OT interpolant: every step lands on the target law again
            assert float(x.std()) == pytest.approx(s, rel=0.02) and float(x.mean()) == pytest.approx(mu, abs=0.1)
            assert w2(x, target) < 0.05
    # independent noise leaves that distribution: the 2-step samples shrink (std 3 sqrt(2.5) / 2 = 2.37)
    x, _ = sample_with(build("ct"), net, RECTIFIED, x0, "renoise:2")
    assert float(x.std()) == pytest.approx(s * math.sqrt(0.25 + 0.25 * s * s) / (0.5 + 0.5 * s), rel=0.03)


def test_bad_renoise_options_name_the_choices():
    # the valid choices are the couplings that need only the data (other tests may register more of them):
    # `reflow`, which needs a teacher, is not one
    with pytest.raises(ConfigError, match=r"renoise='exact'.*unknown coupling 'exact'; valid: independent, ot, sinkhorn") as bad:
        build("ct", renoise="exact")
    assert "reflow" not in str(bad.value).split("valid:")[1]
    with pytest.raises(ConfigError, match=r"renoise='reflow'.*needs more than the data.*: independent, ot, sinkhorn") as bad:
        build("ct", renoise="reflow")
    assert "reflow" not in str(bad.value).split("need only the data:")[1]
    with pytest.raises(ConfigError, match="renoise_block=0.*block=0 is out of range"):
        build("ct", renoise_block=0)


def test_short_distillation_reaches_the_teachers_ode_in_one_step(teacher, tmp_path):
    run = train(apply_overrides(load_recipe("cd"), tiny(tmp_path, f"method.teacher={teacher}", "method.s1=16",
                                                        "optim.lr=1e-3", "optim.ema_decay=0.9", steps=800))).run_dir
    x0 = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    _, student = load_run(run)
    _, flow = load_run(teacher)
    ref = student.target.sample(1000, torch.Generator().manual_seed(1))
    one, nfe = student.sample(x0, "renoise:1")
    euler, _ = flow.sample(x0, "euler:1")
    ode, _ = flow.sample(x0, "dopri5", rtol=1e-5, atol=1e-5)
    assert nfe == 1
    # the student's one step lands where the teacher's ODE does (measured: 0.015 vs Euler's 8.0) ...
    paired = lambda x: float((x - ode).pow(2).sum(1).mean())  # noqa: E731
    assert paired(one) < 0.05 * paired(euler)
    # ... so its quality is the teacher's adaptive quality, far above the teacher's own one-step Euler
    assert w2(one, ref) < 1.1 * w2(ode, ref) and w2(one, ref) < 0.7 * w2(euler, ref)
