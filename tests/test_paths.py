"""Paths: closed-form derivatives against autograd, endpoints, the target as d/dt x_t, conversions."""

import pytest
import torch

from flowkit.paths import PATHS, PREDICTIONS



@pytest.fixture(autouse=True)
def float64():
    """These are exactness tests: float64 in this module only (a global default would leak into others)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)

PATH_SPECS = [
    {"name": "rectified"},
    {"name": "ot", "sigma_min": 0.0},
    {"name": "ot", "sigma_min": 0.1},
    {"name": "cosine"},
    {"name": "vp"},
    {"name": "vp", "beta_min": 0.5, "beta_max": 5.0},
]
IDS = [",".join(f"{k}={v}" for k, v in s.items()) for s in PATH_SPECS]


def interior_times(n=64):
    return torch.linspace(0.01, 0.99, n, dtype=torch.float64)


@pytest.mark.parametrize("spec", PATH_SPECS, ids=IDS)
def test_derivatives_match_autograd(spec):
    path = PATHS.build(spec)
    t = interior_times().requires_grad_(True)
    for f, df in ((path.alpha, path.d_alpha), (path.sigma, path.d_sigma)):
        (auto,) = torch.autograd.grad(f(t).sum(), t)
        torch.testing.assert_close(df(t.detach()), auto, rtol=1e-9, atol=1e-9)


def expected_endpoint_coefficients(spec):
    """(alpha(0), sigma(0), alpha(1), sigma(1)): exact 0/1 but for CondOT's sigma_min and VP's alpha(0)."""
    if spec["name"] == "ot":
        return 0.0, 1.0, 1.0, spec["sigma_min"]
    if spec["name"] == "vp":
        b0, b1 = spec.get("beta_min", 0.1), spec.get("beta_max", 20.0)
        alpha0 = torch.exp(torch.tensor(-0.5 * (b0 + 0.5 * (b1 - b0))))
        return float(alpha0), float(torch.sqrt(1 - alpha0**2)), 1.0, 0.0
    return 0.0, 1.0, 1.0, 0.0


@pytest.mark.parametrize("spec", PATH_SPECS, ids=IDS)
def test_endpoints(spec):
    path = PATHS.build(spec)
    x0, x1 = torch.randn(8, 3), torch.randn(8, 3)
    a0, s0, a1, s1 = expected_endpoint_coefficients(spec)
    torch.testing.assert_close(path.sample(x0, x1, torch.zeros(8)), a0 * x1 + s0 * x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(path.sample(x0, x1, torch.ones(8)), a1 * x1 + s1 * x0, rtol=0, atol=1e-12)
    if spec["name"] in ("rectified", "cosine") or spec == {"name": "ot", "sigma_min": 0.0}:
        torch.testing.assert_close(path.sample(x0, x1, torch.zeros(8)), x0, rtol=0, atol=1e-12)
        torch.testing.assert_close(path.sample(x0, x1, torch.ones(8)), x1, rtol=0, atol=1e-12)
    if spec == {"name": "vp"}:
        assert 0 < a0 < 1e-2  # VP's alpha(0) = exp(-T(1)/2) ~ 6.6e-3 with the default schedule


@pytest.mark.parametrize("spec", PATH_SPECS, ids=IDS)
def test_target_is_time_derivative_of_sample(spec):
    path = PATHS.build(spec)
    x0, x1 = torch.randn(16, 2), torch.randn(16, 2)
    t = torch.rand(16) * 0.9 + 0.05
    _, jvp = torch.autograd.functional.jvp(lambda s: path.sample(x0, x1, s), t, torch.ones_like(t))
    torch.testing.assert_close(path.target(x0, x1, t), jvp)


@pytest.mark.parametrize("spec", PATH_SPECS, ids=IDS)
@pytest.mark.parametrize("src", PREDICTIONS)
@pytest.mark.parametrize("dst", PREDICTIONS)
def test_conversions_round_trip(spec, src, dst):
    path = PATHS.build(spec)
    x_t, value = torch.randn(10, 1, 4, 4), torch.randn(10, 1, 4, 4)
    t = torch.rand(10) * 0.9 + 0.05
    back = path.convert(path.convert(value, x_t, t, src, dst), x_t, t, dst, src)
    torch.testing.assert_close(back, value)


@pytest.mark.parametrize("spec", PATH_SPECS, ids=IDS)
def test_conditional_velocity_recovers_the_pair(spec):
    path = PATHS.build(spec)
    x0, x1 = torch.randn(12, 2), torch.randn(12, 2)
    t = torch.rand(12) * 0.9 + 0.05
    x_t, u = path.sample(x0, x1, t), path.target(x0, x1, t)
    torch.testing.assert_close(path.convert(u, x_t, t, "velocity", "x1"), x1)
    torch.testing.assert_close(path.convert(u, x_t, t, "velocity", "x0"), x0)


@pytest.mark.parametrize("spec", PATH_SPECS, ids=IDS)
def test_score_of_gaussian_data_matches_closed_form(spec):
    """x1 ~ N(mu, c^2 I), x0 ~ N(0, I): p_t = N(alpha mu, (alpha^2 c^2 + sigma^2) I) and the marginal
    velocity is alpha' E[x1|x] + sigma' E[x0|x]; converting it must give the true score."""
    path = PATHS.build(spec)
    mu, c = torch.tensor([1.5, -0.5]), 0.7
    x = torch.randn(20, 2) * 2
    t = torch.rand(20) * 0.9 + 0.05
    a, s = path.alpha(t)[:, None], path.sigma(t)[:, None]
    da, ds = path.d_alpha(t)[:, None], path.d_sigma(t)[:, None]
    var = a**2 * c**2 + s**2
    centred = x - a * mu
    e_x1 = mu + a * c**2 / var * centred
    e_x0 = s / var * centred
    velocity = da * e_x1 + ds * e_x0
    torch.testing.assert_close(path.convert(velocity, x, t, "velocity", "score"), -centred / var)


def test_bad_options_name_the_value():
    from flowkit.errors import ConfigError

    with pytest.raises(ConfigError, match=r"sigma_min=-0.1 is out of range"):
        PATHS.build({"name": "ot", "sigma_min": -0.1})
    with pytest.raises(ConfigError, match=r"beta_min"):
        PATHS.build({"name": "vp", "beta_min": 0.0})


@pytest.mark.parametrize("spec", PATH_SPECS, ids=IDS)
@pytest.mark.parametrize("prediction", ["x1", "x0", "score"])
def test_a_network_predicting_another_quantity_is_seen_as_the_marginal_velocity(spec, prediction):
    """Wrap the closed-form E[x1|x], E[x0|x] or score of Gaussian data: AsVelocity must return the
    closed-form marginal velocity alpha' E[x1|x] + sigma' E[x0|x]."""
    from flowkit.models.parameterisation import AsVelocity

    path = PATHS.build(spec)
    mu, c = torch.tensor([1.5, -0.5]), 0.7

    def posterior(x, t):
        a, s = path.alpha(t)[:, None], path.sigma(t)[:, None]
        var = a**2 * c**2 + s**2
        centred = x - a * mu
        return mu + a * c**2 / var * centred, s / var * centred, -centred / var, a, s

    class Oracle(torch.nn.Module):
        def forward(self, x, t):
            e_x1, e_x0, score, _, _ = posterior(x, t)
            return {"x1": e_x1, "x0": e_x0, "score": score}[prediction]

    x, t = torch.randn(20, 2) * 2, torch.rand(20) * 0.9 + 0.05
    e_x1, e_x0, _, _, _ = posterior(x, t)
    velocity = path.d_alpha(t)[:, None] * e_x1 + path.d_sigma(t)[:, None] * e_x0
    torch.testing.assert_close(AsVelocity(Oracle(), path, prediction, eps=1e-6)(x, t), velocity)


@pytest.mark.parametrize("spec", PATH_SPECS, ids=IDS)
@pytest.mark.parametrize("kind", PREDICTIONS)
def test_score_gain_is_the_derivative_of_the_conversion_from_the_score(spec, kind):
    """Classifier guidance adds score_gain * delta to a prediction: the conversion from the score is affine in
    it, so that is exact; checked against autograd's jvp of ``convert`` in the interior."""
    path = PATHS.build(spec)
    g = torch.Generator().manual_seed(0)
    t = interior_times(16)
    x, score, delta = (torch.randn(16, 3, generator=g, dtype=torch.float64) for _ in range(3))
    _, jvp = torch.func.jvp(lambda s: path.convert(s, x, t, "score", kind), (score,), (delta,))
    torch.testing.assert_close(path.score_gain(x, t, kind) * delta, jvp, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("spec", PATH_SPECS, ids=IDS)
def test_score_gain_is_finite_at_both_ends(spec):
    path = PATHS.build(spec)
    x = torch.ones(2, 3, dtype=torch.float64)
    for kind in PREDICTIONS:
        assert torch.isfinite(path.score_gain(x, torch.tensor([0.0, 1.0]), kind)).all(), kind
