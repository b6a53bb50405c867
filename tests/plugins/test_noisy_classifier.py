"""Noisy-data classifier plugin and classifier guidance: the guided prediction's score against the formula, a
short training, the share of samples in the requested class rising with the scale, and bad input."""

import pytest
import torch

import flowkit
from flowkit.conditioning import Cond
from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.errors import ConfigError, ContractError
from flowkit.config.guidance import Classifier
from flowkit.methods import Method, check_method
from flowkit.paths import PATHS, PREDICTIONS
from flowkit.samplers import Predictor
from flowkit.training.loop import train
from tests.helpers import run_cli, tiny


@pytest.mark.parametrize("path_name", ["rectified", "vp", "cosine"])
@pytest.mark.parametrize("kind", PREDICTIONS)
def test_a_guided_prediction_implies_the_model_score_plus_the_scaled_classifier_gradient(path_name, kind):
    """Logits x W^T: grad_x log softmax(x W^T)_y = W_y - softmax(x W^T) W, in closed form."""
    g = torch.Generator().manual_seed(0)
    path = PATHS.build({"name": path_name})
    W = torch.randn(3, 2, generator=g, dtype=torch.float64)
    x = torch.randn(32, 2, generator=g, dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, 32, dtype=torch.float64)
    y = torch.randint(3, (32,), generator=g)
    field = torch.randn(2, 2, generator=g, dtype=torch.float64)
    predictor = Predictor(lambda x, t: x @ field + t[:, None], kind, path)
    classifier = Classifier(lambda x, t: x @ W.T, 3, scale=2.5)
    guided = predictor(x, t, Cond(y, None, 0, classifier))
    plain = predictor(x, t)
    implied = path.convert(guided, x, t, kind, "score") - path.convert(plain, x, t, kind, "score")
    expected = 2.5 * (W[y] - torch.softmax(x @ W.T, dim=1) @ W)
    torch.testing.assert_close(implied, expected, rtol=1e-8, atol=1e-8)
    assert predictor.nfe == 2  # the model's calls; the classifier's are not counted as NFE


def test_a_classifier_must_not_be_sampled_and_must_learn_labels():
    class Sampled(Method):
        classifier = True
        needs_labels = True

    with pytest.raises(ContractError, match="declare ode = False"):
        check_method("sampled", Sampled)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("guidance")
    classifier = train(apply_overrides(load_recipe("noisy_classifier"), tiny(root, steps=400)))
    model = train(apply_overrides(load_recipe("rectified"), tiny(root, steps=800)))
    return root, classifier, model


def test_the_classifier_learns_and_reports_accuracy_along_the_path(runs):
    _, classifier, _ = runs
    accuracy = classifier.summary["classifier_accuracy"]
    assert accuracy["acc@t=1"] > 0.9 and accuracy["acc@t=0.25"] < accuracy["acc@t=1"], accuracy
    assert "rows" not in classifier.summary and not (classifier.run_dir / "samples.png").exists()


def test_the_share_in_the_requested_class_rises_with_the_scale(runs):
    _, classifier, model = runs
    flow = flowkit.load(model.run_dir)
    target = flow.parts.target
    share = {}
    for scale in (0.0, 1.0, 4.0):
        x = flow.sample(1000, "euler:20", label=5, classifier=classifier.run_dir, classifier_scale=scale,
                        generator=torch.Generator().manual_seed(0))
        share[scale] = float((target.classify(x) == 5).float().mean())
    assert share[0.0] < 0.3 < 0.8 < share[1.0] <= share[4.0] + 0.02, share


def test_classifier_guidance_through_the_cli(runs):
    root, classifier, model = runs
    proc = run_cli(["sample", f"ckpt={model.run_dir}", "n=500", "solver=dpm++2m:10", "grid=logsnr", "label=2",
                    f"classifier={classifier.run_dir}", "classifier_scale=2", f"out={root / 'g.npy'}"], cwd=root)
    assert proc.returncode == 0, proc.stderr
    share = float(proc.stdout.split("classifier):")[1].split("%")[0]) / 100
    assert share > 0.8, proc.stdout


@pytest.mark.parametrize("case,message", [
    ("sample_the_classifier", "trains a classifier of noisy data: it is not sampled"),
    ("not_a_classifier", "does not train a classifier; train one with method=noisy_classifier"),
    ("negative_scale", "classifier_scale=-1.0 is out of range"),
    ("label_out_of_range", "label=8 is out of range"),
])
def test_bad_classifier_input_is_one_line_with_exit_code_2(runs, case, message):
    root, classifier, model = runs
    args = {
        "sample_the_classifier": [f"ckpt={classifier.run_dir}"],
        "not_a_classifier": [f"ckpt={model.run_dir}", f"classifier={model.run_dir}"],
        "negative_scale": [f"ckpt={model.run_dir}", f"classifier={classifier.run_dir}", "classifier_scale=-1"],
        "label_out_of_range": [f"ckpt={model.run_dir}", f"classifier={classifier.run_dir}", "label=8"],
    }[case]
    proc = run_cli(["sample", *args, "n=10", f"out={root / 'bad.npy'}"], cwd=root)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_a_classifier_of_another_path_is_refused(runs):
    root, _, model = runs
    other = train(apply_overrides(load_recipe("noisy_classifier"), tiny(root, "path=cosine", steps=5)))
    with pytest.raises(ConfigError, match="was trained on the path Cosine"):
        flowkit.load(model.run_dir).sample(10, "euler:2", label=1, classifier=other.run_dir)


def test_a_classifier_whose_config_names_the_whole_disk_loads_without_reading_its_data(runs, monkeypatch):
    """A checkpoint saying data.target=folder:/ made loading the classifier scan the disk: its data's shape and
    classes are in the checkpoint, so nothing of its data is read."""
    from flowkit.data import images

    root, classifier, model = runs
    ckpt = torch.load(classifier.run_dir / "last.ckpt", weights_only=True)
    ckpt["flowkit"]["config"]["data"]["target"] = "folder:/"
    torch.save(ckpt, root / "disk.ckpt")
    monkeypatch.setattr(images, "_files", lambda root: pytest.fail(f"the classifier's data was read: {root}"))
    x = flowkit.load(model.run_dir).sample(20, "euler:4", label=1, classifier=root / "disk.ckpt",
                                           generator=torch.Generator().manual_seed(0))
    assert x.shape == (20, 2) and torch.isfinite(x).all()
