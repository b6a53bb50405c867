"""Time samplers: logit-normal moments, support, and the SD3 densities' symmetry."""

import math

import pytest
import torch

from flowkit.errors import ConfigError
from flowkit.timesteps import TIME_SAMPLERS


@pytest.mark.parametrize("m,s", [(0.0, 1.0), (0.5, 0.8), (-1.0, 1.5)])
def test_logit_normal_logit_moments(m, s):
    t = TIME_SAMPLERS.build({"name": "logit_normal", "m": m, "s": s})(200_000).double()
    logit = torch.log(t) - torch.log1p(-t)
    # standard errors: s / sqrt(n) for the mean, s / sqrt(2n) for the std
    assert float(logit.mean()) == pytest.approx(m, abs=5 * s / math.sqrt(200_000))
    assert float(logit.std()) == pytest.approx(s, abs=5 * s / math.sqrt(400_000))


@pytest.mark.parametrize("spec", [{"name": "uniform"}, {"name": "logit_normal"}, {"name": "mode", "s": 1.29},
                                  {"name": "mode", "s": -0.5}, {"name": "cosmap"}])
def test_samplers_stay_in_unit_interval_and_are_symmetric(spec):
    t = TIME_SAMPLERS.build(spec)(100_000)
    assert t.shape == (100_000,) and float(t.min()) >= 0 and float(t.max()) <= 1
    # every density here is symmetric under t -> 1 - t (m = 0): the mean is 1/2
    assert float(t.mean()) == pytest.approx(0.5, abs=0.01)


def test_mode_concentrates_where_its_sign_says():
    middle = TIME_SAMPLERS.build({"name": "mode", "s": 1.29})(100_000)
    ends = TIME_SAMPLERS.build({"name": "mode", "s": -0.9})(100_000)
    uniform = torch.rand(100_000)
    near_half = lambda t: float(((t - 0.5).abs() < 0.1).float().mean())  # noqa: E731
    assert near_half(middle) > near_half(uniform) > near_half(ends)


@pytest.mark.parametrize("spec,match", [({"name": "logit_normal", "s": 0.0}, "s=0.0"),
                                        ({"name": "mode", "s": 5.0}, "s=5.0")])
def test_out_of_range_parameters(spec, match):
    with pytest.raises(ConfigError, match=match):
        TIME_SAMPLERS.build(spec)
