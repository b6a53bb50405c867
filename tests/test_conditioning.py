"""Class-conditional generation: labelled data, label dropout, class-conditional OT, guidance."""

import numpy as np
import pytest
import torch

from flowkit.config.build import build_parts
from flowkit.conditioning import Cond, drop_labels, labels_for
from flowkit.config.schema import apply_overrides, load_recipe, validate
from flowkit.couplings import COUPLINGS
from flowkit.data import DATASETS
from flowkit.data.digits import Digits
from flowkit.errors import ConfigError
from flowkit.methods import CFM, register_method
from flowkit.models import MODELS, compose
from flowkit.paths import PATHS
from flowkit.samplers import Predictor
from flowkit.training.loop import train
from tests.helpers import run_cli, tiny


@pytest.mark.parametrize("name", ["8gaussians", "moons", "checkerboard"])
def test_labelled_toys_draw_the_same_points_as_unlabelled_ones(name):
    data = DATASETS.build({"name": name})
    x, y = data.sample_labelled(500, torch.Generator().manual_seed(3))
    assert torch.equal(x, data.sample(500, torch.Generator().manual_seed(3)))
    assert y.dtype == torch.long and set(y.tolist()) == set(range(data.num_classes))


def test_toy_labels_name_the_mode_the_half_moon_and_the_square():
    x, y = DATASETS.build({"name": "8gaussians"}).sample_labelled(4000, torch.Generator().manual_seed(0))
    centers = DATASETS.build({"name": "8gaussians"}).centers
    assert (torch.cdist(x, centers).argmin(1) == y).float().mean() > 0.999  # modes 5 apart, std 0.56
    x, y = DATASETS.build({"name": "moons", "noise": 0.0}).sample_labelled(1000, torch.Generator().manual_seed(0))
    u = (x.double() + 1) / 3  # torchdyn's coordinates: outer arc on the unit circle at 0, inner at (1, 0.5)
    assert torch.equal(((u.norm(dim=1) - 1).abs() < 1e-5).long(), 1 - y)
    x, y = DATASETS.build({"name": "checkerboard"}).sample_labelled(1000, torch.Generator().manual_seed(0))
    column = torch.floor(x[:, 0] / 2)
    lower = (x[:, 1] / 2 - column % 2 < 0).long()  # the upper square of a column starts at its offset
    assert torch.equal((column.long() + 2) * 2 + lower, y)


def test_digits_labels_are_scikit_learns_targets():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    d = Digits("all")
    images = torch.from_numpy(bunch.images).float().div(16).mul(2).sub(1)
    for row in (0, 100, 1796):
        (match,) = [i for i in range(len(images)) if torch.equal(images[i], d.data[row, 0])][:1]
        assert int(d.labels[row]) == int(bunch.target[match])


def test_label_dropout_rate_matches_its_setting():
    torch.manual_seed(0)
    y = drop_labels(torch.randint(10, (200_000,)), 0.1, 10)
    share = float((y == 10).float().mean())
    assert abs(share - 0.1) < 4 * (0.1 * 0.9 / 200_000) ** 0.5


SEEN = []


@register_method("test_record_labels")
class RecordLabels(CFM):
    def loss(self, model, batch):
        SEEN.append(batch["y"].clone())
        return super().loss(model, batch)


def test_the_trainer_drops_labels_at_cond_drop_and_passes_the_rest(tmp_path):
    SEEN.clear()
    train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, "method=test_record_labels", "cond.labels=true",
                                                         "cond.drop=0.3", "data.batch_size=512", steps=20)))
    y = torch.cat(SEEN)
    share = float((y == 8).float().mean())  # 8gaussians: classes 0..7, null = 8
    assert abs(share - 0.3) < 4 * (0.3 * 0.7 / y.numel()) ** 0.5
    assert set(y.tolist()) == set(range(9))


@pytest.mark.parametrize("name", ["ot", "sinkhorn"])
def test_class_conditional_ot_never_pairs_across_classes(name):
    centers = DATASETS.build({"name": "8gaussians"}).centers
    g = torch.Generator().manual_seed(0)
    y = torch.randint(8, (256,), generator=g)
    x1 = centers[y] + 0.1 * torch.randn(256, 2, generator=g)
    x0 = centers[(y + 1) % 8] + 0.1 * torch.randn(256, 2, generator=g)  # each source sits on the next class
    coupling = COUPLINGS.build({"name": name})
    nearest = lambda x: torch.cdist(x, centers).argmin(1)  # noqa: E731
    _, plain = coupling(x0, x1)
    assert (nearest(plain) != y).float().mean() > 0.5  # unconditional OT pairs across classes here ...
    x0_c, paired = coupling(x0, x1, y=y)
    assert torch.equal(x0_c, x0) and torch.equal(nearest(paired), y)  # ... class-conditional OT never does
    if name == "ot":  # exact OT between equal batches: a permutation within each class
        assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, x1.tolist()))


def test_guidance_zero_is_the_unconditional_model_one_the_conditional():
    torch.manual_seed(0)
    net = compose(MODELS.build({"name": "mlp", "width": 32}, data_shape=(2,)), classes=4)
    calls = []
    net.register_forward_hook(lambda *args: calls.append(1))
    x, t, y = torch.randn(16, 2), torch.rand(16), torch.randint(4, (16,))
    model = Predictor(net, "velocity", PATHS.build({"name": "rectified"}))
    with torch.no_grad():
        conditional, unconditional = net(x, t, cond=y), net(x, t)
        torch.testing.assert_close(model(x, t, Cond(y, 0.0, 4)), unconditional)
        torch.testing.assert_close(model(x, t, Cond(y, None, 4)), conditional)
        calls.clear()
        guided = model(x, t, Cond(y, 2.5, 4))
    assert len(calls) == 1  # both branches in one batched call, one NFE
    assert model.nfe == 3
    torch.testing.assert_close(guided, unconditional + 2.5 * (conditional - unconditional))
    torch.testing.assert_close(net(x, t, cond=torch.full_like(y, 4)), unconditional)  # None is the null class


def test_labels_for_checks_the_class():
    assert labels_for(5, 3, 2, torch.Generator()).tolist() == [2] * 5
    with pytest.raises(ConfigError, match="label=3 is out of range"):
        labels_for(5, 3, 3, torch.Generator())


@pytest.mark.parametrize("tokens,match", [
    (["cond.labels=true", "data.target=2spirals"], "has no labels; `flowkit list` shows which datasets have classes"),
    (["cond.labels=true", "model.num_classes=3"], "model 'mlp' has no option 'num_classes'"),
])
def test_bad_conditioning_is_a_config_error(tokens, match):
    with pytest.raises(ConfigError, match=match):
        build_parts(apply_overrides(load_recipe("rectified"), tokens))


def test_label_dropout_out_of_range_is_refused():
    with pytest.raises(ConfigError, match=r"cond.drop=1.0 is out of range"):
        validate(apply_overrides(load_recipe("rectified"), ["cond.drop=1.0"]))


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond")
    return train(apply_overrides(load_recipe("rectified"), tiny(root, "cond.labels=true", "coupling=ot",
                                                                "model.width=128", "optim.ema_decay=0.99",
                                                                steps=1500)))


def test_a_short_conditional_run_puts_samples_in_the_requested_mode(conditional_run):
    assert conditional_run.summary["label_accuracy"] > 0.95


def test_guided_sampling_through_the_cli(conditional_run, tmp_path):
    out = tmp_path / "s.npy"
    proc = run_cli(["sample", f"ckpt={conditional_run.run_dir}", "n=500", "solver=euler:8", "label=3",
                    "guidance=2", f"out={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    labels = np.load(tmp_path / "s_labels.npy")
    assert labels.tolist() == [3] * 500
    centers = DATASETS.build({"name": "8gaussians"}).centers
    x = torch.from_numpy(np.load(out))
    assert (torch.cdist(x, centers).argmin(1) == 3).float().mean() > 0.98


def test_guidance_on_an_unconditional_model_is_refused(tmp_path):
    run = train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, steps=5))).run_dir
    proc = run_cli(["sample", f"ckpt={run}", "n=10", "guidance=2", f"out={tmp_path / 'x.pt'}"], cwd=tmp_path)
    assert proc.returncode == 2 and "trained without labels" in proc.stderr
    assert not (tmp_path / "x.pt").exists()


def test_guided_distillation_targets_the_guided_teacher_and_feeds_w_to_the_student(conditional_run, tmp_path):
    from flowkit.methods import METHODS
    from flowkit.paths import PATHS

    method = METHODS.build({"name": "progressive", "teacher": str(conditional_run.run_dir), "student_steps": 4,
                            "guided": True, "guidance_min": 1.0, "guidance_max": 3.0},
                           path=PATHS.build({"name": "rectified"}), data_shape=(2,))
    assert method.inputs == ("guidance",) and method.needs_labels
    y = torch.randint(8, (64,))
    velocity, inputs = method.teacher_velocity({"x0": torch.zeros(64, 2), "x1": torch.zeros(64, 2), "y": y},
                                               torch.device("cpu"))
    w = inputs["w"]
    assert torch.equal(inputs["cond"], y) and float(w.min()) >= 1.0 and float(w.max()) <= 3.0 and w.std() > 0.3
    teacher = method.teacher(torch.device("cpu"))
    x, t = torch.randn(64, 2), torch.rand(64)
    with torch.no_grad():
        c, u = teacher(x, t, cond=y), teacher(x, t)
        torch.testing.assert_close(velocity(x, t), u + w[:, None] * (c - u))


def test_guided_progressive_distillation_runs_end_to_end(conditional_run, tmp_path):
    result = train(apply_overrides(load_recipe("progressive"), tiny(
        tmp_path, f"method.teacher={conditional_run.run_dir}", "cond.labels=true", "method.guided=true",
        "method.student_steps=2", "eval.solver=euler:2", "model.width=128", steps=30)))
    final = result.rounds[-1].run_dir
    assert len(result.rounds) == 2 and result.rounds[-1].summary["label_accuracy"] is not None
    proc = run_cli(["sample", f"ckpt={final}", "n=200", "solver=euler:1", "label=5", "guidance=2",
                    f"out={tmp_path / 'g.npy'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_guided_distillation_needs_labels(conditional_run):
    with pytest.raises(ConfigError, match="needs class labels: cond.labels=true"):
        build_parts(apply_overrides(load_recipe("progressive"), [f"method.teacher={conditional_run.run_dir}",
                                                                 "method.guided=true", "model.width=128"]))


def test_digit_label_accuracy_uses_the_datasets_own_classifier_even_under_no_grad():
    from flowkit.metrics.digits_features import digits_classifier
    from flowkit.training.evaluate import label_accuracy

    digits_classifier.cache_clear()  # the first (loading) call must work inside no_grad too
    held_out = Digits("test")
    with torch.no_grad():
        accuracy = label_accuracy(held_out, held_out.data, held_out.labels)
    assert accuracy > 0.93


def test_conditional_reflow_draws_pairs_of_the_batch_label_from_a_conditional_teacher(conditional_run, tmp_path):
    coupling = COUPLINGS.build({"name": "reflow", "teacher": str(conditional_run.run_dir), "pairs": 1000,
                                "solver": "euler:16", "cache": str(tmp_path / "pairs.pt")}, data_shape=(2,))
    y = torch.arange(8).repeat(64)
    z0, z1 = coupling(torch.zeros(512, 2), torch.zeros(512, 2), y=y)
    centers = DATASETS.build({"name": "8gaussians"}).centers
    assert (torch.cdist(z1, centers).argmin(1) == y).float().mean() > 0.95  # Phi(z0 | y) lands in mode y
    cached = torch.load(tmp_path / "pairs.pt", weights_only=True)
    assert cached["meta"]["labelled"] and cached["y"].shape == (1000,)
    # every drawn pair is a cached pair of the requested class
    key = {tuple(a.tolist()): int(c) for a, c in zip(cached["x0"], cached["y"])}
    assert all(key[tuple(a.tolist())] == int(c) for a, c in zip(z0, y))


def test_conditional_reflow_refuses_an_unconditional_teacher(tmp_path):
    run = train(apply_overrides(load_recipe("rectified"), tiny(tmp_path, steps=5))).run_dir
    coupling = COUPLINGS.build({"name": "reflow", "teacher": str(run), "pairs": 10, "solver": "euler:2"},
                               data_shape=(2,))
    with pytest.raises(ConfigError, match="needs a class-conditional teacher"):
        coupling(torch.zeros(4, 2), torch.zeros(4, 2), y=torch.zeros(4, dtype=torch.long))
