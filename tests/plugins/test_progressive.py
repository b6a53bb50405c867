"""Progressive distillation: the two-step target, the truncated-SNR weight, and stage bookkeeping."""

import pytest
import torch

from flowkit.runtime.checkpoint import read_checkpoint
from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.methods import METHODS
from flowkit.paths import PATHS
from flowkit.training.loop import train
from flowkit.samplers import Predictor
from flowkit.samplers.ddim import DDIM, ddim_step
from flowkit.plugins.progressive.ddim import endpoints_through
from tests.helpers import tiny


def rotation_field(x, t):
    """A curved teacher: no single step can follow it, so the target is informative."""
    return torch.stack([-x[:, 1], x[:, 0]], 1) * (1 + t[:, None])


@pytest.mark.parametrize("path_name", ["rectified", "cosine", "vp", "ot"])
def test_one_student_step_on_the_target_equals_two_teacher_steps(path_name):
    path = PATHS.build({"name": path_name})
    x_t = torch.randn(32, 2, dtype=torch.float64)
    t = torch.randint(0, 8, (32,)).double() / 8
    half = torch.full_like(t, 1 / 16)
    mid = ddim_step(path, rotation_field(x_t, t), x_t, t, t + half)
    end = ddim_step(path, rotation_field(mid, t + half), mid, t + half, t + 2 * half)
    x0_target, x1_target = endpoints_through(path, x_t, t, end, t + 2 * half)
    student_velocity = path.from_endpoints(x0_target, x1_target, t, "velocity")
    torch.testing.assert_close(ddim_step(path, student_velocity, x_t, t, t + 2 * half), end)


def test_ddim_is_euler_on_the_rectified_path():
    path = PATHS.build({"name": "rectified"})
    x0 = torch.randn(16, 2, dtype=torch.float64)
    x = x0.clone()
    for i in range(4):
        t = torch.full((16,), i / 4, dtype=torch.float64)
        x = x + 0.25 * rotation_field(x, t)
    ddim, nfe = DDIM()(Predictor(rotation_field, "velocity", path), x0, torch.linspace(0, 1, 5, dtype=torch.float64))
    torch.testing.assert_close(ddim, x)
    assert nfe == 4


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("pd-teacher")
    return train(apply_overrides(load_recipe("rectified"), tiny(root, "optim.ema_decay=0.9", steps=200))).run_dir


def test_method_target_matches_the_teachers_two_steps(teacher):
    path = PATHS.build({"name": "rectified"})
    method = METHODS.build({"name": "progressive", "teacher": str(teacher), "student_steps": 4}, path=path,
                           data_shape=(2,))
    net = method.teacher(torch.device("cpu"))
    x_t, t = torch.randn(64, 2), torch.randint(0, 4, (64,)).float() / 4
    x0_target, x1_target = method.target(x_t, t)
    student = path.from_endpoints(x0_target, x1_target, t, "velocity")
    with torch.no_grad():
        mid = x_t + net(x_t, t) / 8
        two_steps = mid + net(mid, t + 1 / 8) / 8
    torch.testing.assert_close(x_t + student / 4, two_steps, rtol=1e-4, atol=1e-5)
    # the loss vanishes for a student that predicts exactly that
    assert float(method.loss(lambda x, s: path.from_endpoints(*method.target(x, s), s, "velocity"),
                             {"x0": torch.randn(8, 2), "x1": torch.randn(8, 2)})["loss"].max()) < 1e-8


def test_truncated_snr_weight(teacher):
    path = PATHS.build({"name": "rectified"})
    method = METHODS.build({"name": "progressive", "teacher": str(teacher), "student_steps": 4,
                            "weighting": "truncated_snr"}, path=path, data_shape=(2,))
    torch.manual_seed(3)
    batch = {"x0": torch.randn(4096, 2), "x1": torch.randn(4096, 2)}
    zero = lambda x, s: torch.zeros_like(x)  # noqa: E731
    torch.manual_seed(5)
    loss = method.loss(zero, batch)["loss"]
    torch.manual_seed(5)
    t = torch.randint(0, 4, (4096,)).float() / 4  # the draw inside loss(): t = 3/4 has SNR 9
    x_t = path.sample(batch["x0"], batch["x1"], t)
    _, x1_target = method.target(x_t, t)
    _, x1_zero = path.endpoints(torch.zeros_like(x_t), x_t, t, "velocity")
    weight = torch.clamp((t / (1 - t)) ** 2, min=1.0)  # SNR of the rectified path, truncated below at 1
    assert float(weight.max()) == 9.0
    torch.testing.assert_close(loss, weight * ((x1_zero - x1_target) ** 2).mean(1))


def test_stages_halve_the_steps_chain_teachers_and_save_every_stage(teacher, tmp_path):
    result = train(apply_overrides(load_recipe("progressive"), tiny(
        tmp_path, f"method.teacher={teacher}", "method.student_steps=4", "eval.solver=ddim:4", steps=6)))
    stages = [read_checkpoint(r.run_dir)["flowkit"]["config"] for r in result.rounds]
    assert [c["method"]["student_steps"] for c in stages] == [4, 2, 1]
    assert [c["eval"]["solver"] for c in stages] == ["ddim:4", "ddim:2", "ddim:1"]
    teachers = [c["method"]["teacher"] for c in stages]
    assert teachers == [str(teacher), str(result.rounds[0].run_dir), str(result.rounds[1].run_dir)]
    assert [c["model"]["init_from"] for c in stages] == teachers
    assert all((r.run_dir / "last.ckpt").exists() for r in result.rounds)
