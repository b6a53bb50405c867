"""Reflow plugin: cached pairs, the fixed point of a straight teacher, straighter students, distillation."""

import json

import pytest
import torch

from flowkit.runtime.checkpoint import read_checkpoint
from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.couplings import COUPLINGS
from flowkit.errors import ConfigError
from flowkit.methods import METHODS, CFM
from flowkit.paths import PATHS
from flowkit.samplers.integrate import solve
from flowkit.training.loop import train
from flowkit.plugins.reflow.pairs import generate_pairs
from tests.helpers import run_cli, tiny

MU = torch.tensor([3.0, -1.0], dtype=torch.float64)
S = torch.tensor([0.5, 2.0], dtype=torch.float64)


def straight_field(x, t):
    """x_t = mu t + (1 - t + t s) x0 moves every particle on a straight line at constant speed."""
    t = t[:, None]
    x0 = (x - MU * t) / (1 - t + t * S)
    return MU + (S - 1) * x0


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    return train(apply_overrides(load_recipe("rectified"), tiny(root, "optim.ema_decay=0.9", "eval.compare=[euler:1]",
                                                                    steps=300))).run_dir


def reflow_spec(teacher, **extra):
    return {"name": "reflow", "teacher": str(teacher), "pairs": 512, "solver": "rk4:8", **extra}


def test_the_coupling_returns_exactly_the_cached_pairs(teacher, tmp_path):
    cache = tmp_path / "pairs.pt"
    coupling = COUPLINGS.build(reflow_spec(teacher, cache=str(cache)), data_shape=(2,))
    x0, x1 = coupling(torch.zeros(64, 2), torch.zeros(64, 2))
    stored = torch.load(cache, weights_only=True)
    rows = {tuple(r) for r in torch.cat([stored["x0"], stored["x1"]], 1).tolist()}
    assert all(tuple(r) in rows for r in torch.cat([x0, x1], 1).tolist())
    # a second coupling with the same settings reuses the cache instead of asking the teacher again
    again = COUPLINGS.build(reflow_spec(teacher, cache=str(cache)), data_shape=(2,))
    z0, z1 = again.pairs(torch.device("cpu"))
    assert torch.equal(z0, stored["x0"]) and torch.equal(z1, stored["x1"])
    # and refuses a cache made with other settings
    other = COUPLINGS.build(reflow_spec(teacher, cache=str(cache), seed=1), data_shape=(2,))
    with pytest.raises(ConfigError, match="made with other settings"):
        other.pairs(torch.device("cpu"))


def test_pairs_are_the_teacher_ode_map(teacher):
    coupling = COUPLINGS.build(reflow_spec(teacher), data_shape=(2,))
    z0, z1 = coupling.pairs(torch.device("cpu"))
    from flowkit.teacher import load_teacher

    model, parts, _ = load_teacher(teacher)
    again, nfe = parts.sample(z0[:32], "rk4:8")
    torch.testing.assert_close(again, z1[:32])
    assert nfe == 32


def test_a_straight_teacher_is_a_fixed_point_of_reflow():
    """Pairs (x0, Phi(x0)) of a straight flow give a CFM target that equals the teacher's own velocity
    along every path, so the teacher is the reflow loss's minimiser (loss 0 at the teacher)."""
    x0 = torch.randn(256, 2, dtype=torch.float64)
    z0, z1 = generate_pairs(lambda x: solve(straight_field, x, method="dopri5", rtol=1e-10, atol=1e-10)[0], x0, 100,
                            torch.device("cpu"))
    torch.testing.assert_close(z1, MU + S * x0)  # the exact map
    rectified = PATHS.build({"name": "rectified"})
    cfm = CFM(rectified, lambda n, device: torch.rand(n, dtype=torch.float64))
    loss = cfm.loss(straight_field, {"x0": z0, "x1": z1})["loss"]
    assert float(loss.max()) < 1e-16


def test_a_short_reflow_lowers_straightness_and_one_step_error(teacher, tmp_path):
    student = train(apply_overrides(load_recipe("reflow"), tiny(
        tmp_path, f"coupling.teacher={teacher}", "coupling.pairs=4000", "optim.ema_decay=0.9",
        "eval.compare=[euler:1]", steps=300)))
    t, s = json.loads((teacher / "summary.json").read_text()), student.summary
    assert s["straightness"] < 0.5 * t["straightness"]
    one_step = lambda summary: next(r["value"] for r in summary["rows"] if r["solver"] == "euler:1")  # noqa: E731
    assert one_step(s) < one_step(t)
    assert read_checkpoint(teacher)["global_step"] == 300  # the teacher is read, never written


def test_distill_loss_is_the_one_step_regression():
    distill = METHODS.build({"name": "reflow_distill"})
    x0, x1 = torch.randn(8, 2), torch.randn(8, 2)
    model = lambda x, t: 2 * x + t[:, None]  # noqa: E731
    loss = distill.loss(model, {"x0": x0, "x1": x1})["loss"]
    torch.testing.assert_close(loss, ((x0 + 2 * x0 - x1) ** 2).mean(1))
    # the student that has learned the pair map is exact in one Euler step
    exact = lambda x, t: MU.float() + (S.float() - 1) * x  # noqa: E731
    z0 = torch.randn(16, 2)
    assert float(distill.loss(exact, {"x0": z0, "x1": MU.float() + S.float() * z0})["loss"].max()) < 1e-10


def test_teacher_of_another_data_shape_is_a_one_line_error(teacher, tmp_path):
    proc = run_cli(["train", "recipe=reflow", f"coupling.teacher={teacher}", "data.target=digits",
                    f"run_root={tmp_path / 'runs'}"], cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "was trained on data of shape (2,), but this run's data has shape (1, 8, 8)" in proc.stderr
    assert not (tmp_path / "runs").exists()
    proc = run_cli(["train", "recipe=reflow"], cwd=tmp_path)
    assert proc.returncode == 2 and "coupling 'reflow' needs a teacher" in proc.stderr


def test_rounds_chain_each_flow_as_the_next_teacher(teacher, tmp_path):
    result = train(apply_overrides(load_recipe("reflow"), tiny(
        tmp_path, f"coupling.teacher={teacher}", "coupling.pairs=500", "coupling.rounds=2", "coupling.solver=rk4:4",
        steps=20)))
    first, second = [r.run_dir for r in result.rounds]
    assert first != second and result.run_dir == second
    cfg = read_checkpoint(second)["flowkit"]["config"]
    assert cfg["coupling"]["teacher"] == str(first) and cfg["coupling"]["rounds"] == 1
    assert cfg["model"]["init_from"] == str(first)
    assert read_checkpoint(first)["flowkit"]["config"]["coupling"]["teacher"] == str(teacher)
    assert all("straightness" in r.summary for r in result.rounds)
