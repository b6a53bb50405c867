"""Shortcut models: the self-consistency target on the exact Gaussian flow, the taught step sizes and times, the
finest level read at d = 0, the sampler's jumps, the options, and a short training against flow matching."""

import pytest
import torch
from torch import nn

from flowkit.config.build import load_run
from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.errors import ConfigError
from flowkit.methods import METHODS
from flowkit.metrics.distances import w2
from flowkit.paths import PATHS
from flowkit.samplers import Predictor
from flowkit.timesteps import TIME_SAMPLERS
from flowkit.training.loop import train
from flowkit.plugins.shortcut.method import ShortcutJumps, halves_target
from tests.gaussian_model import MU, S
from tests.helpers import tiny


def shortcut(path="rectified", **options):
    return METHODS.build({"name": "shortcut", **options}, path=PATHS.build({"name": path}),
                         time_sampler=TIME_SAMPLERS.build({"name": "uniform"}))


class ExactShortcut(nn.Module):
    """s(x, t, d) of N(0, I) -> N(MU, S^2 I) on an affine path: the flow keeps (x - alpha mu) / sqrt(v_t) fixed,
    so the jump from t to t + d is exact; at d = 0 the marginal velocity."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def sd(self, t):
        t = t.double()[:, None]
        a, s = self.path.alpha(t), self.path.sigma(t)
        return a, (a**2 * S**2 + s**2).sqrt()

    def forward(self, x, t, d=None, **_):
        d = torch.zeros_like(t) if d is None else d
        a, v = self.sd(t)
        b, w = self.sd((t + d).clamp(max=1.0))
        moved = b * MU + w / v * (x - a * MU)
        small = d[:, None].abs() < 1e-9
        p = self.path
        tt = t.double()[:, None]
        c = (p.alpha(tt) * p.d_alpha(tt) * S**2 + p.sigma(tt) * p.d_sigma(tt)) / v**2
        velocity = p.d_alpha(tt) * MU + c * (x - a * MU)
        return torch.where(small, velocity, (moved - x) / torch.where(small, torch.ones_like(d[:, None]), d[:, None]))


@pytest.mark.parametrize("path", ["rectified", "cosine"])
def test_two_exact_half_jumps_are_the_exact_doubled_jump(path):
    """The self-consistency target is exact where s is the true average velocity (the flow map is a semigroup)."""
    net = ExactShortcut(PATHS.build({"name": path}))
    torch.manual_seed(0)
    x = torch.randn(64, 2, dtype=torch.float64)
    t = torch.rand(64, dtype=torch.float64) * 0.5
    h = torch.full((64,), 0.25, dtype=torch.float64)
    target = halves_target(net, x, t, h, h)
    torch.testing.assert_close(target, net(x, t, d=2 * h), rtol=0, atol=1e-12)
    # not vacuous: the doubled jump is far from one Euler step of the velocity
    assert float((net(x, t, d=2 * h) - net(x, t, d=torch.zeros_like(t))).abs().max()) > 0.05


@pytest.mark.parametrize("taught, bound", [(0.5, 1e-20), (0.25, 1e-20), (0.125, 0.1)])
def test_the_exact_shortcut_has_zero_self_consistency_loss_above_the_finest_level(taught, bound):
    """levels=4: halves of 1/2 and 1/4 are exact jumps (loss 0); the finest taught step, 1/8, is two velocity
    (d = 0) steps of 1/16, exact only to second order (small, not 0)."""
    method = shortcut("cosine", levels=4, consistency=0.5)
    net = ExactShortcut(method.path)
    torch.manual_seed(1)
    x0 = torch.randn(512, 2, dtype=torch.float64)
    x1 = MU + S * torch.randn(512, 2, dtype=torch.float64)
    t = torch.floor(torch.rand(256, dtype=torch.float64) / taught) * taught
    method.steps = lambda m, device, dtype: (t, torch.full((m,), taught, dtype=dtype))
    terms = method.loss(net, {"x0": x0, "x1": x1})
    assert terms["loss"].shape == (512,)
    assert float(terms["loss"][256:].max()) < bound
    if bound > 1e-20:
        assert float(terms["loss"][256:].mean()) > 1e-10


def test_taught_steps_are_powers_of_two_and_times_their_multiples():
    method = shortcut(levels=5)
    torch.manual_seed(0)
    t, big = method.steps(20000, torch.device("cpu"), torch.float64)
    levels = torch.log2(1 / big)
    assert set(levels.round().tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0} and torch.equal(levels, levels.round())
    assert torch.equal(t / big, (t / big).round()) and bool((t + big <= 1).all()) and bool((t >= 0).all())
    counts = torch.bincount(levels.long())
    assert counts.min() > 0.9 * counts.max()  # each level drawn alike


def test_the_finest_half_step_is_fed_as_d_0():
    method = shortcut(levels=1, consistency=0.5)  # taught step 1, halves 1/2: the finest, read at d = 0
    seen = []

    class Spy(nn.Module):
        def forward(self, x, t, d=None):
            seen.append(d.clone())
            return torch.zeros_like(x)

    method.loss(Spy(), {"x0": torch.randn(8, 2), "x1": torch.randn(8, 2)})
    flow, first, second, doubled = seen
    assert torch.equal(flow, torch.zeros(4)) and torch.equal(first, torch.zeros(4)) and torch.equal(second, first)
    assert torch.equal(doubled, torch.ones(4))


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_jumps_of_the_exact_shortcut_land_on_the_exact_map(steps):
    from tests.gaussian_model import exact_map

    path = PATHS.build({"name": "rectified"})
    x0 = torch.randn(32, 2, dtype=torch.float64)
    model = Predictor(ExactShortcut(path), "velocity", path)
    x, nfe = ShortcutJumps()(model, x0, torch.linspace(0, 1, steps + 1, dtype=torch.float64))
    torch.testing.assert_close(x, exact_map(path, x0))
    assert nfe == steps


@pytest.mark.parametrize("options, message", [({"levels": 0}, "levels=0"), ({"consistency": 1.0}, "consistency=1.0")])
def test_options_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        shortcut(**options)


def test_short_training_gives_one_step_samples_far_better_than_flow_matching(tmp_path):
    common = ["model.width=128", "optim.ema_decay=0.99", "eval.compare=[]"]
    sc = train(apply_overrides(load_recipe("shortcut"), tiny(tmp_path / "sc", *common, steps=1500))).run_dir
    fm = train(apply_overrides(load_recipe("rectified"), tiny(tmp_path / "fm", *common, steps=1500))).run_dir
    x0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    _, parts = load_run(sc)
    ref = parts.target.sample(2000, torch.Generator().manual_seed(1))
    one, nfe = parts.sample(x0, "shortcut:1")
    four, _ = parts.sample(x0, "shortcut:4")
    ode, _ = parts.sample(x0, "dopri5")  # d = 0 is a velocity field: ODE samplers apply
    _, cfm = load_run(fm)
    euler, _ = cfm.sample(x0, "euler:1")
    assert nfe == 1
    assert w2(one, ref) < 0.5 * w2(euler, ref), (w2(one, ref), w2(euler, ref))
    assert w2(four, ref) < 1.5 * w2(ode, ref), (w2(four, ref), w2(ode, ref))
