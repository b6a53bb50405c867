"""The Python API (flowkit.train / load / compare, Flow): the CLI's behaviour and checks from Python."""

import math

import pytest
import torch

import flowkit
from flowkit.interface.api import override_tokens
from tests.gaussian_model import MU, S


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    return flowkit.train("rectified", trainer={"max_steps": 150, "enable_progress_bar": False},
                         **{"optim.ema_decay": 0.9, "eval.n": 200, "eval.repeats": 1, "eval.compare": []},
                         run_root=str(root))


def test_overrides_from_python_values():
    assert override_tokens({"trainer": {"max_steps": 2000}, "optim.lr": 1e-3, "path": "cosine",
                            "coupling": {"name": "ot"}, "data": {"path": None}, "eval": {"compare": ["euler:4"]}}) == [
        "trainer.max_steps=2000", "optim.lr=0.001", 'path="cosine"', 'coupling={"name": "ot"}', "data.path=null",
        'eval.compare=["euler:4"]']


def test_train_load_sample_invert_and_compare(run, tmp_path):
    assert run.checkpoint.is_file() and run.summary["metric"] == "W2" and run.notes == []  # decay 0.9: no short-EMA note
    flow = flowkit.load(run)
    assert flow.data_shape == (2,) and flow.classes == 0 and "rectified" in repr(flow)
    g = torch.Generator().manual_seed(0)
    a = flow.sample(300, sampler="dpm++2m:8", grid="logsnr", generator=torch.Generator().manual_seed(0))
    b = flow.sample(300, sampler="dpm++2m:8", grid="logsnr", generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)  # the generator decides the draw
    assert flow.sample(5, sampler="em:20", generator=g).shape == (5, 2)
    x = flow.sample(100, sampler="dopri5", generator=g, rtol=1e-7, atol=1e-7)
    z = flow.invert(x, sampler="dopri5", rtol=1e-7, atol=1e-7)
    back = flowkit.load(run.dir).parts.sample(z, "dopri5", rtol=1e-7, atol=1e-7)[0]
    torch.testing.assert_close(back, x, atol=1e-4, rtol=0)
    v = flow.velocity(x[:4], 0.5)
    assert v.shape == (4, 2) and torch.isfinite(v).all()
    assert torch.isfinite(flow.log_prob(x[:20])).all()
    rows = flowkit.compare([run], ["euler:2", "heun:2", "em:10"], n=200)
    assert [r["nfe"] for r in rows] == [2, 4, 10] and math.isnan(rows[2]["error"])


def test_log_prob_is_the_density_of_an_exactly_known_flow(tmp_path):
    """log_prob of N(MU, S^2 I) through the Gaussian oracle: the closed-form density."""
    from flowkit.interface.api import Flow
    from flowkit.config.build import Parts
    from flowkit.data import DATASETS
    from flowkit.methods import METHODS
    from flowkit.paths import PATHS
    from flowkit.timesteps import TIME_SAMPLERS
    from tests.gaussian_model import GaussianVelocity

    path = PATHS.build({"name": "rectified"})
    method = METHODS.build({"name": "cfm"}, path=path, time_sampler=TIME_SAMPLERS.build({"name": "uniform"}))
    gauss = DATASETS.build({"name": "gaussian"}, data_shape=(2,))
    parts = Parts(gauss, gauss, GaussianVelocity(path).float(), path, None, method, method_name="cfm")
    flow = Flow({"name": "oracle", "path": {"name": "rectified"}}, parts, torch.device("cpu"))
    x = MU.float() + S * torch.randn(50, 2)
    expected = torch.distributions.Normal(MU.float(), S).log_prob(x).sum(1)
    torch.testing.assert_close(flow.log_prob(x, rtol=1e-7, atol=1e-7), expected, atol=1e-3, rtol=0)


@pytest.mark.parametrize("call,message", [
    (lambda run: flowkit.train("rectifed"), "unknown recipe 'rectifed'.*did you mean 'rectified'"),
    (lambda run: flowkit.train("rectified", trainer={"max_stepz": 5}), "max_stepz"),
    (lambda run: flowkit.train("rectified", optim={"lr": -1}), "optim.lr"),
    (lambda run: flowkit.train("rectified", path="nope"), "unknown path 'nope'"),
    (lambda run: flowkit.load("no/such/run"), "no checkpoint or run directory at 'no/such/run'"),
    (lambda run: flowkit.load(run, device="tpu"), "device='tpu' is not one of"),
    (lambda run: flowkit.load(run).sample(10, sampler="rk5"), "unknown sampler 'rk5'"),
    (lambda run: flowkit.load(run).sample(0), "n=0: expected a whole number >= 1"),
    (lambda run: flowkit.load(run).sample(10, label=3), "trained without labels"),
    (lambda run: flowkit.load(run).invert(torch.zeros(4, 3)), r"expected a tensor of shape \(n, 2\)"),
    (lambda run: flowkit.load(run).invert(torch.ones(4, 2), sampler="pc:4"), "cannot invert"),
    (lambda run: flowkit.compare([run], ["euler:0"]), "needs a step count"),
    (lambda run: flowkit.compare([run], ["euler:2"], n=1), "n=1 is out of range"),
    (lambda run: flowkit.compare([run], ["euler:2"], grid="logsnrr"), "unknown grid 'logsnrr'"),
    # each of these raised something other than ConfigError
    (lambda run: flowkit.load(None), "run=None: expected a run directory, a .ckpt file or a Run"),
    (lambda run: flowkit.load(123), "run=123: expected a run directory, a .ckpt file or a Run"),
    (lambda run: flowkit.load(run, device="cuda:abc"), "device='cuda:abc' is not one of"),
    (lambda run: flowkit.load(run).sample(True), "n=True: expected a whole number >= 1"),
    (lambda run: flowkit.load(run).sample(10**11), r"n=100000000000"),
    (lambda run: flowkit.load(run).velocity(torch.zeros(4, 2), t="abc"), "t='abc': expected a number"),
    (lambda run: flowkit.load(run).velocity(torch.zeros(4, 2), t=torch.zeros(3)), r"t: 3 times for 4 points"),
    (lambda run: flowkit.load(run).velocity(torch.zeros(4, 2), t=float("nan")), "t=nan: expected a number in"),
    (lambda run: flowkit.train("rectified", optim={"lr": float("inf")}), "optim.lr=inf is out of range"),
    (lambda run: flowkit.train("rectified", trainer={"max_steps": object()}), "trainer.max_steps=<object"),
])
def test_bad_input_raises_config_error(run, call, message):
    with pytest.raises(flowkit.ConfigError, match=message):
        call(run)


def test_paths_numpy_scalars_and_tensors_are_accepted_as_values(tmp_path):
    """run_root=pathlib.Path(...), numpy and 0-d tensor numbers were 'not JSON serializable'."""
    import numpy as np

    run = flowkit.train("rectified", run_root=tmp_path / "runs", trainer={"max_steps": np.int64(3),
                        "enable_progress_bar": np.bool_(False)}, optim={"lr": torch.tensor(1e-3)},
                        eval={"n": np.int32(50), "repeats": 1, "compare": []})
    assert run.dir.parent == tmp_path / "runs" and run.summary["steps"] == 3


def test_a_sample_count_may_be_a_numpy_or_tensor_whole_number(run):
    """Flow.sample(np.int64(5)) was refused as 'not a whole number' (found by bench/faults_surfaces.py)."""
    import numpy as np

    flow = flowkit.load(run)
    for n in (np.int64(5), np.int32(5), torch.tensor(5)):
        assert flow.sample(n, sampler="euler:2").shape == (5, 2)
    for n in (np.float64(2.5), torch.tensor(2.5), np.bool_(True), torch.tensor([5, 6])):
        with pytest.raises(flowkit.ConfigError, match=r"expected a whole number >= 1"):
            flow.sample(n, sampler="euler:2")
