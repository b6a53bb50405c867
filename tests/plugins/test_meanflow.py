"""MeanFlow: the jvp target, the sign of our time convention on a curved flow, the CFM limit, sampling."""

import pytest
import torch
from torch import nn

from flowkit.config.build import load_run
from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.errors import ConfigError
from flowkit.methods import METHODS
from flowkit.metrics.distances import w2
from flowkit.models import MODELS
from flowkit.paths import PATHS, expand_like
from flowkit.training.loop import train
from flowkit.timesteps import TIME_SAMPLERS
from flowkit.models import Conditioned, compose
from flowkit.samplers import Predictor
from flowkit.plugins.meanflow.method import MeanFlowJumps
from tests.helpers import tiny


def meanflow(path="rectified", time=None, **options):
    return METHODS.build({"name": "meanflow", **options}, path=PATHS.build({"name": path}),
                         time_sampler=time or TIME_SAMPLERS.build({"name": "uniform"}))


class ShiftFlow(nn.Module):
    """The exact average velocity of a curved flow: pairs x1 = x0 + mu on a curved path, so the
    conditional velocity is the marginal one and z_t = alpha_t mu + (alpha_t + sigma_t) x0."""

    def __init__(self, path, mu):
        super().__init__()
        self.path, self.mu = path, mu

    def forward(self, z, r, t=None, t_end=None):
        t = t_end if t_end is not None else (r if t is None else t)
        a_r, s_r = (expand_like(f(r), z) for f in (self.path.alpha, self.path.sigma))
        x0 = (z - a_r * self.mu) / (a_r + s_r)
        a_t, s_t = (expand_like(f(t), z) for f in (self.path.alpha, self.path.sigma))
        return (a_t * self.mu + (a_t + s_t) * x0 - z) / expand_like(t - r, z)


@pytest.mark.parametrize("model_name,shape", [("mlp", (3,)), ("unet", (1, 4, 4))])
def test_jvp_derivative_equals_finite_differences(model_name, shape):
    torch.manual_seed(0)
    spec = {"name": model_name, **({"channels": 8, "mults": [1, 2]} if model_name == "unet" else {})}
    net = compose(MODELS.build(spec, data_shape=shape), ("t_end",)).double()
    if model_name == "unet":  # its output layer starts at zero; give it a slope to measure
        nn.init.normal_(net.backbone.out[-1].weight, std=0.1)
    z, v = torch.randn(5, *shape, dtype=torch.float64), torch.randn(5, *shape, dtype=torch.float64)
    r = torch.rand(5, dtype=torch.float64) * 0.5
    t = r + 0.4
    _, du_dr = meanflow().average_velocity(net, z, r, t, v)
    h = 1e-6
    with torch.no_grad():
        fd = (net(z + h * v, r + h, t) - net(z - h * v, r - h, t)) / (2 * h)
    torch.testing.assert_close(du_dr, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("path_name", ["cosine", "vp"])
def test_the_true_average_velocity_of_a_curved_flow_has_zero_loss(path_name):
    method = meanflow(path_name, equal_fraction=0.0, p=0.0)
    mu = torch.tensor([2.0, -1.0], dtype=torch.float64)
    u = ShiftFlow(method.path, mu)
    torch.manual_seed(1)
    x0 = torch.randn(256, 2, dtype=torch.float64)
    loss = method.loss(u, {"x0": x0, "x1": x0 + mu})["loss"]
    assert float(loss.max()) < 1e-18
    # not vacuous: the (t - r) du/dr term is large, and the paper's sign (the other convention) fails
    r, t = method.times(256, x0.device, x0.dtype)
    z, v = method.path.sample(x0, x0 + mu, r), method.path.target(x0, x0 + mu, r)
    _, du_dr = method.average_velocity(u, z, r, t, v)
    correction = expand_like(t - r, v) * du_dr
    assert float(correction.pow(2).mean()) > 0.05
    torch.testing.assert_close(u(z, r, t), v + correction)
    assert float((u(z, r, t) - (v - correction)).pow(2).mean()) > 0.1


def test_equal_times_reduce_to_the_cfm_loss():
    fixed = torch.rand(64)
    time = lambda n, device: fixed  # noqa: E731  (one draw seen by both losses)
    method = meanflow(time=time, equal_fraction=1.0, p=0.0)
    cfm = METHODS.build({"name": "cfm"}, path=method.path, time_sampler=time)
    torch.manual_seed(0)
    net = compose(MODELS.build({"name": "mlp", "width": 32}, data_shape=(2,)), ("t_end",))
    batch = {"x0": torch.randn(64, 2), "x1": torch.randn(64, 2) + 3}
    torch.testing.assert_close(method.loss(net, batch)["loss"], cfm.loss(net, batch)["loss"])


def test_adaptive_weight():
    method = meanflow(equal_fraction=1.0, p=0.5, c=0.01)
    zero = lambda z, r, t=None: torch.zeros_like(z)  # noqa: E731
    batch = {"x0": torch.zeros(8, 2), "x1": torch.ones(8, 2)}  # v = x1 - x0 = 1 everywhere, so ||delta||^2 = 1
    torch.testing.assert_close(method.loss(zero, batch)["loss"], torch.full((8,), 1.0 / 1.01 ** 0.5))


def test_one_jump_of_the_true_average_velocity_lands_on_the_data():
    path = PATHS.build({"name": "cosine"})
    mu = torch.tensor([2.0, -1.0], dtype=torch.float64)
    x0 = torch.randn(16, 2, dtype=torch.float64)
    for steps in (1, 3):
        model = Predictor(ShiftFlow(path, mu), "velocity", path)
        x, nfe = MeanFlowJumps()(model, x0, torch.linspace(0, 1, steps + 1, dtype=torch.float64))
        torch.testing.assert_close(x, x0 + mu)
        assert nfe == steps


def test_the_end_time_input_is_composed_onto_the_backbone_not_a_model_option():
    from flowkit.config.build import build_parts

    parts = build_parts(apply_overrides(load_recipe("meanflow"), []))
    assert isinstance(parts.model, Conditioned) and parts.model.inputs == {"t_end"}
    assert hasattr(parts.model, "interval") and not hasattr(parts.model, "classes") and not hasattr(parts.model, "guidance")
    plain = build_parts(apply_overrides(load_recipe("rectified"), []))
    assert not isinstance(plain.model, Conditioned)  # a method that needs nothing gets the bare backbone
    with pytest.raises(ConfigError, match=r"model 'mlp' has no option 'times'"):
        build_parts(apply_overrides(load_recipe("meanflow"), ["model.times=2"]))


def test_short_training_gives_one_step_samples_far_better_than_cfm(tmp_path):
    common = ["model.width=128", "optim.ema_decay=0.99", "eval.compare=[]"]
    mf = train(apply_overrides(load_recipe("meanflow"), tiny(tmp_path / "mf", *common, steps=1500))).run_dir
    fm = train(apply_overrides(load_recipe("rectified"), tiny(tmp_path / "fm", *common, steps=1500))).run_dir
    x0 = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    _, parts = load_run(mf)
    assert parts.model.interval is not None  # the checkpoint rebuilt a two-time network
    ref = parts.target.sample(1000, torch.Generator().manual_seed(1))
    one, nfe = parts.sample(x0, "meanflow:1")
    _, cfm_parts = load_run(fm)
    euler, _ = cfm_parts.sample(x0, "euler:1")
    assert nfe == 1
    assert w2(one, ref) < 0.5 * w2(euler, ref)
