"""Adversarial distillation: the hinge and R1 terms by hand, the student's data prediction, the
distillation target, weight 0 = distillation alone, and a short run beating distillation alone."""

import pytest
import torch

from flowkit.config.build import load_run
from flowkit.runtime.checkpoint import read_checkpoint
from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.errors import ConfigError
from flowkit.methods import METHODS
from flowkit.metrics.distances import w2
from flowkit.paths import PATHS
from flowkit.samplers import sample_with
from flowkit.timesteps import TIME_SAMPLERS
from flowkit.training.loop import train
from flowkit.plugins.adversarial.critic import make_critic
from flowkit.plugins.adversarial.losses import hinge_critic, hinge_model, r1_penalty
from flowkit.plugins.adversarial.method import data_prediction
from tests.helpers import tiny


def test_the_hinge_losses_match_hand_computed_values():
    real = torch.tensor([2.0, 0.5, -1.0, 1.0])
    fake = torch.tensor([-2.0, 0.0, 0.5, -1.0])
    # relu(1 - real) = [0, 0.5, 2, 0]; relu(1 + fake) = [0, 1, 1.5, 0]
    torch.testing.assert_close(hinge_critic(real, fake), torch.tensor([0.0, 1.5, 3.5, 0.0]))
    torch.testing.assert_close(hinge_model(fake), torch.tensor([2.0, 0.0, -0.5, 1.0]))


def test_r1_matches_the_gradient_norm_of_known_critics():
    x = torch.tensor([[1.0, 2.0], [-3.0, 0.5]], requires_grad=True)
    a = torch.tensor([0.3, -4.0])
    # linear D(x) = a.x + 1: grad a, ||a||^2 = 16.09; gamma / 2 = 0.05
    torch.testing.assert_close(r1_penalty(x @ a + 1, x, 0.1), torch.full((2,), 0.05 * 16.09))
    # quadratic D(x) = ||x||^2: grad 2x, ||2x||^2 = 4 * [5, 9.25]
    penalty = r1_penalty(x.pow(2).sum(1), x, 0.1)
    torch.testing.assert_close(penalty, torch.tensor([0.05 * 20.0, 0.05 * 37.0]))
    penalty.sum().backward()  # differentiable: d/dx 0.2 ||x||^2 = 0.4 x
    torch.testing.assert_close(x.grad, 0.4 * x.detach())


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8)])
@pytest.mark.parametrize("classes", [0, 3])
def test_critics_score_each_sample_and_use_labels_by_projection(shape, classes):
    critic = make_critic(shape, classes, width=32, depth=2)
    x = torch.randn(5, *shape)
    y = torch.tensor([0, 1, 2, 3, 1]) if classes else None
    out = critic(x, cond=y)
    assert out.shape == (5,)
    if classes:  # the label moves the score; the null class (3) has its own embedding
        assert not torch.allclose(out, critic(x, cond=torch.zeros(5, dtype=torch.long)))


@pytest.mark.parametrize("path", ["rectified", "cosine", "vp"])
def test_the_students_data_prediction_is_the_endpoint_its_velocity_implies(path):
    p = PATHS.build({"name": path})
    x0, x1 = torch.randn(64, 2), torch.randn(64, 2) + 3
    t = torch.rand(64) * 0.98
    exact = lambda x, s: p.target(x0, x1, s)  # noqa: E731  (the conditional velocity of this very pair)
    torch.testing.assert_close(data_prediction(exact, p, p.sample(x0, x1, t), t), x1, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("adv-teacher")
    return train(apply_overrides(load_recipe("rectified"), tiny(root, "optim.ema_decay=0.9", steps=300))).run_dir


def build(teacher, **options):
    return METHODS.build({"name": "adversarial", "teacher": str(teacher), "critic_width": 32, **options},
                         path=PATHS.build({"name": "rectified"}), time_sampler=TIME_SAMPLERS.build({"name": "uniform"}),
                         data_shape=(2,), total_steps=10)


def test_the_distillation_target_is_the_teachers_prediction_from_the_renoised_sample(teacher):
    method = build(teacher)
    net = method.teacher.on(torch.device("cpu"))
    x0, fake = torch.randn(128, 2), torch.randn(128, 2)
    torch.manual_seed(3)
    got = method.distillation(fake, {"x0": x0})
    torch.manual_seed(3)
    t = torch.rand(128)  # the uniform time sampler's draw, then the permutation of the source draws
    z = x0[torch.randperm(128)]
    x_t = t[:, None] * fake + (1 - t[:, None]) * z
    with torch.no_grad():
        target = x_t + (1 - t[:, None]) * net(x_t, t)  # x1 from the velocity on the rectified path
    torch.testing.assert_close(got, t * (fake - target).pow(2).sum(1))


def test_at_adversarial_weight_0_the_loss_is_distillation_alone_whatever_the_critic(teacher):
    method = build(teacher, adversarial_weight=0.0)
    model = load_run(teacher)[1].model
    batch = {"x0": torch.randn(64, 2), "x1": torch.randn(64, 2)}
    assert method.critic_loss(model, batch) is None  # no critic step
    grads = []
    for scale in (1.0, 100.0):
        with torch.no_grad():
            for p in method.critic.parameters():
                p.mul_(scale)
        torch.manual_seed(5)
        terms = method.loss(model, batch)
        torch.testing.assert_close(terms["loss"], 2.5 * terms["distill"])
        model.zero_grad()
        terms["loss"].mean().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_options_are_checked(teacher):
    with pytest.raises(ConfigError, match="adversarial_weight=-1"):
        build(teacher, adversarial_weight=-1.0)
    with pytest.raises(ConfigError, match="student_steps=0"):
        build(teacher, student_steps=0)
    with pytest.raises(ConfigError, match="sampler 'dopri5' solves the velocity ODE.*its samplers: renoise"):
        sample_with(build(teacher), lambda x, t: x, PATHS.build({"name": "rectified"}), torch.zeros(4, 2), "dopri5")


def run(tmp_path, teacher, *extra, steps=600):
    return train(apply_overrides(load_recipe("adversarial"), tiny(
        tmp_path, f"method.teacher={teacher}", "method.critic_width=64", "optim.lr=1e-3", "method.critic_lr=1e-3",
        "optim.ema_decay=0.99", "eval.compare=[]", *extra, steps=steps))).run_dir


def test_training_at_weight_0_is_distillation_the_critic_neither_trains_nor_matters(teacher, tmp_path):
    a = read_checkpoint(run(tmp_path / "a", teacher, "method.adversarial_weight=0", steps=20))
    b = read_checkpoint(run(tmp_path / "b", teacher, "method.adversarial_weight=0", "method.critic_lr=0.5",
                            "method.r1_gamma=3", steps=20))
    assert len(a["optimizer_states"]) == 2 and a["optimizer_states"][1]["state"] == {}  # the critic never stepped
    model = lambda ckpt: {k: v for k, v in ckpt["current_model_state"].items() if k.startswith("model.")}  # noqa: E731
    assert all(torch.equal(v, model(b)[k]) for k, v in model(a).items())


def test_only_the_model_is_averaged_the_critic_copy_follows_its_weights(teacher, tmp_path):
    ckpt = read_checkpoint(run(tmp_path / "ema", teacher, "optim.ema_decay=0.9", steps=20))
    averaged, raw = ckpt["state_dict"], ckpt["current_model_state"]
    critic = [k for k in raw if k.startswith("networks.critic.")]
    assert critic and all(torch.equal(averaged[k], raw[k]) for k in critic)  # not averaged: it asked for no EMA
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw if k.startswith("model."))


def test_a_short_run_beats_its_teacher_one_step_and_distillation_alone(teacher, tmp_path):
    adversarial = load_run(run(tmp_path / "adv", teacher, "method.distill_weight=0.1"))[1]
    distilled = load_run(run(tmp_path / "distill", teacher, "method.adversarial_weight=0"))[1]
    _, flow = load_run(teacher)
    x0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0))
    ref = flow.target.sample(2000, torch.Generator().manual_seed(1))
    one = w2(adversarial.sample(x0, "renoise:1")[0], ref)
    alone = w2(distilled.sample(x0, "renoise:1")[0], ref)
    euler = w2(flow.sample(x0, "euler:1")[0], ref)
    ode = w2(flow.sample(x0, "dopri5")[0], ref)
    # measured: 0.67 against distillation alone 4.1, the teacher's Euler 2.9 and its dopri5 1.55 (300 steps):
    # the critic sees real data, so the student can outgrow a short-trained teacher
    assert one < 0.5 * alone and one < 0.5 * euler and one < ode, (one, alone, euler, ode)
