"""Teachers as a contract (flowkit.teacher): any teacher, read on the student's path, is the exact flow it claims.

The oracle is Gaussian data N(MU, S^2 I) from N(0, I) (tests.gaussian_model): its x0-prediction on the VP path,
read by a rectified student, must be the closed-form rectified velocity and data prediction, whether it comes as
a function, a module class with a weights file, or a torch.export archive.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from flowkit.errors import ConfigError
from flowkit.paths import PATHS
from flowkit.teacher import Teacher
from tests.gaussian_model import MU, S, GaussianVelocity, GaussianX0
from tests.helpers import run_cli, tiny

ROOT = Path(__file__).resolve().parents[1]


def closed_form_x1(path, x, t):
    """E[x1 | x_t] of the Gaussian data on ``path``."""
    t = t.double()[:, None]
    a, sg = path.alpha(t), path.sigma(t)
    return MU + a * S**2 / (a**2 * S**2 + sg**2) * (x.double() - a * MU)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same teacher as a weights file for its class and as a torch.export archive."""
    root = tmp_path_factory.mktemp("teacher")
    net = GaussianX0()
    with torch.no_grad():
        net.mu.copy_(MU.float())
    torch.save(net.state_dict(), root / "mu.pt")
    example = (torch.zeros(3, 2), torch.full((3,), 0.5))
    exported = torch.export.export(net, example, dynamic_shapes=({0: torch.export.Dim("batch")},
                                                                 {0: torch.export.Dim("batch")}))
    torch.export.save(exported, root / "teacher.pt2")
    return root


@pytest.mark.parametrize("form", ["function", "weights", "export"])
@pytest.mark.parametrize("student", ["rectified", "cosine", "vp"])
def test_an_x0_teacher_on_vp_is_the_exact_velocity_on_the_students_path(files, form, student):
    spec = {"function": "tests.gaussian_model:vp_x0",
            "weights": f"tests.gaussian_model:GaussianX0:weights={files / 'mu.pt'}",
            "export": str(files / "teacher.pt2")}[form] + ":predicts=x0:path=vp"
    path = PATHS.build({"name": student})
    teacher = Teacher("method 'test'", spec, (2,), path).on("cpu")
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(256, 2, generator=gen) * 1.5, torch.rand(256, generator=gen) * 0.9 + 0.05
    v = teacher(x, t)
    assert torch.allclose(v.double(), GaussianVelocity(path)(x.double(), t.double()), atol=2e-4, rtol=1e-4)
    assert torch.allclose(teacher.predict("x1", x, t).double(), closed_form_x1(path, x, t), atol=2e-4)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_a_velocity_teacher_on_the_students_own_path_is_called_as_it_is():
    path = PATHS.build({"name": "rectified"})
    teacher = Teacher("method 'test'", "tests.test_teacher:rectified_velocity", (2,), path).on("cpu")
    x, t = torch.randn(64, 2), torch.rand(64)
    assert torch.equal(teacher(x, t), rectified_velocity(x, t))  # no conversion on the same path and kind
    assert torch.allclose(teacher.predict("x1", x, t).double(), closed_form_x1(path, x, t), atol=1e-4)


def rectified_velocity(x, t):
    """The exact velocity of the Gaussian data on the rectified path (a velocity teacher)."""
    return GaussianVelocity(PATHS.build({"name": "rectified"}))(x, t)


def wrong_shape(x, t):
    return x[:, :1]


def failing(x, t):
    raise RuntimeError("out of cheese")


NOT_CALLABLE = 3


@pytest.mark.parametrize("spec, said", [
    ("tests.gaussian_model:vp_x0:predict=x0", "unknown option 'predict'; valid: predicts, path, weights"),
    ("tests.gaussian_model:vp_x0:predicts=eps", "predicts='eps'; valid: velocity, x1, x0, score"),
    ("tests.no_such_module:f", "cannot import 'tests.no_such_module'"),
    ("tests.gaussian_model:nope", "module 'tests.gaussian_model' has no 'nope'"),
    ("tests.test_teacher:wrong_shape", "gave (2, 1) for a batch of shape (2, 2)"),
    ("tests.test_teacher:failing", "fails on a batch of shape (2, 2) at t = 0.5: RuntimeError: out of cheese"),
    ("tests.test_teacher:NOT_CALLABLE", "is a int, not a callable of (x, t)"),
    ("tests.gaussian_model:GaussianX0:weights=/nonexistent/mu.pt", "no such file '/nonexistent/mu.pt'"),
    ("/nonexistent/teacher.pt2", "no such file '/nonexistent/teacher.pt2'"),
    ("tests.gaussian_model:vp_x0:path=straight", "straight"),
    ("", "needs a teacher"),
])
def test_a_bad_teacher_is_one_error_naming_it(spec, said):
    with pytest.raises(ConfigError, match=None) as info:
        Teacher("method 'test'", spec, (2,), PATHS.build({"name": "rectified"}))
    assert said in str(info.value) and "\n" not in str(info.value)


def test_weights_that_do_not_fit_their_module_are_one_error(tmp_path):
    torch.save({"mu": torch.zeros(3)}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="do not load"):
        Teacher("method 'test'", f"tests.gaussian_model:GaussianX0:weights={tmp_path / 'bad.pt'}", (2,),
                PATHS.build({"name": "rectified"}))


def test_a_student_distils_an_outside_x0_teacher_on_vp_through_the_command_line(tmp_path):
    """Progressive distillation of the exact VP x0-teacher, read on the rectified path, into one step: the student
    learns the teacher's two DDIM steps. From x0 at t=0 the first step goes to x = (MU + x0) / 2 (the x1-prediction
    at t=0 is MU); the second lands on E[x1 | x_0.5] = MU + a S^2 / (a^2 S^2 + sigma^2) (x - a MU), a = sigma = 1/2:
    mean MU, spread 0.5 S^2 / (S^2 / 4 + 1 / 4) / 2 = 0.2647 (not the data's S = 0.6: two steps are not the flow).
    The student then samples with the teacher's module no longer importable."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "gauss.npy", (MU.numpy() + S * rng.standard_normal((4000, 2))).astype(np.float32))
    env = {"PYTHONPATH": str(ROOT)}
    proc = run_cli(["train", "recipe=progressive", "method.teacher=tests.gaussian_model:vp_x0:predicts=x0:path=vp",
                    "model.init_from=null", "method.student_steps=1", "data.path=gauss.npy", "data.source=gaussian",
                    "optim.lr=3e-3", *tiny(tmp_path, steps=300), "eval.solver=ddim:1"], cwd=tmp_path, env_extra=env)
    assert proc.returncode == 0, proc.stderr
    run = next((tmp_path / "runs").iterdir())
    proc = run_cli(["sample", f"ckpt={run}", "n=4000", "solver=ddim:1", "out=s.npy", "seed=1"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # no PYTHONPATH: the teacher's module cannot be imported here
    samples = np.load(tmp_path / "s.npy")
    spread = 0.5 * S**2 / (0.25 * S**2 + 0.25) / 2
    assert np.abs(samples.mean(0) - MU.numpy()).max() < 0.05
    assert np.abs(samples.std(0) - spread).max() < 0.03, (samples.std(0), spread)


@pytest.mark.parametrize("args, said", [
    (["method.teacher=nope.module:f:predicts=x0", "model.init_from=null"], "cannot import 'nope.module'"),
    (["method.teacher=tests.gaussian_model:vp_x0:predicts=x0"], "model.init_from=null"),  # the recipe's init_from
])
def test_a_teacher_that_cannot_be_used_is_one_line_and_exit_2(tmp_path, args, said):
    proc = run_cli(["train", "recipe=cd", *args, *tiny(tmp_path)], cwd=tmp_path, env_extra={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert said in proc.stderr and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
