"""Sampler options that would hang or crash (issue: nothing lost on the new surfaces), each reproduced first:
tolerances an adaptive solver cannot meet, corrector steps that multiply the network calls past any cap."""

import pytest
import torch

from flowkit.config.schema import apply_overrides, load_recipe
from flowkit.errors import ConfigError
from flowkit.samplers.base import MAX_NFE, Predictor, Sampler
from flowkit.training.loop import train
from tests.helpers import run_cli, tiny


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("short")
    return train(apply_overrides(load_recipe("rectified"), tiny(root, steps=5))).run_dir


def test_tolerances_dopri5_cannot_meet_are_one_line_naming_them(short_run, tmp_path):
    out = tmp_path / "x.npy"
    proc = run_cli(["sample", f"ckpt={short_run}", "solver=dopri5", "rtol=1e-300", "atol=1e-300", "n=10",
                    f"out={out}"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "dopri5 cannot meet rtol=1e-300, atol=1e-300" in proc.stderr and "loosen" in proc.stderr
    assert not out.exists()


def test_corrector_steps_that_multiply_past_the_cap_are_refused_before_sampling(short_run, tmp_path):
    proc = run_cli(["sample", f"ckpt={short_run}", "solver=pc:10:corrector_steps=100000000", "n=10"],
                   cwd=tmp_path)  # was 10^9 network calls: the step cap ignored corrector steps
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert f"would take 1,000,000,010 network evaluations a draw, more than {MAX_NFE:,}" in proc.stderr


def test_a_sampler_that_does_not_say_its_cost_is_stopped_at_the_cap(monkeypatch):
    monkeypatch.setattr("flowkit.samplers.base.MAX_NFE", 50)

    class Looping(Sampler):
        def __call__(self, model, x0, ts, *, cond=None):
            while True:
                x0 = model(x0, ts[:1].expand(x0.shape[0]))

    from flowkit.paths import PATHS

    model = Predictor(lambda x, t: x, "velocity", PATHS.build({"name": "rectified"}))
    with pytest.raises(ConfigError, match="stopped after 50 network evaluations"):
        Looping()(model, torch.zeros(4, 2), torch.linspace(0, 1, 3))


def test_planned_evaluations_of_the_predictor_corrector():
    from flowkit.samplers.sde import PredictorCorrector

    assert PredictorCorrector(corrector_steps=3).nfe(10) == 40
    assert Sampler().nfe(10) is None
