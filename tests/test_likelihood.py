"""Log-likelihood by the instantaneous change of variables, against a closed-form flow."""

import torch

from flowkit.metrics.likelihood import bits_per_dim, log_likelihood

MU = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
S = torch.tensor([0.5, 2.0, 1.2], dtype=torch.float64)


def linear_flow(x, t):
    """x_t = mu t + (1 - t + t s) x0 carries N(0, I) at t=0 to N(mu, diag(s^2)) at t=1."""
    t = t[:, None]
    x0 = (x - MU * t) / (1 - t + t * S)
    return MU + (S - 1) * x0


def test_exact_log_likelihood_matches_the_gaussian_density():
    x1 = MU + S * torch.randn(64, 3, dtype=torch.float64)
    logp, nfe = log_likelihood(linear_flow, x1, rtol=1e-8, atol=1e-8)
    truth = torch.distributions.Normal(MU, S).log_prob(x1).sum(1)
    assert (logp - truth).abs().max() < 1e-3 and nfe > 0


def test_hutchinson_agrees_with_exact_within_its_standard_error():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3)).double()

    def field(x, t):
        return net(torch.cat([x, t[:, None]], 1))

    x1 = torch.randn(16, 3, dtype=torch.float64)
    exact, _ = log_likelihood(field, x1, method="rk4", steps=20)
    probes = torch.stack([
        log_likelihood(field, x1, method="rk4", steps=20, exact_max_dim=0,
                       generator=torch.Generator().manual_seed(k))[0]
        for k in range(48)
    ])
    mean, se = probes.mean(0), probes.std(0) / 48**0.5
    assert ((mean - exact).abs() <= 4 * se + 1e-9).all()
    assert (probes.std(0) > 0).any()  # it really was stochastic


def test_bits_per_dim_of_a_uniform_density_on_the_bins_is_the_log_of_the_levels():
    # density 1/2 on [-1, 1] per dim, 17 levels 1/8 apart: P(bin) = 1/16 per dim -> 4 bits
    dims = 64
    logp = torch.tensor([dims * torch.log(torch.tensor(0.5)).item()])
    assert float(bits_per_dim(logp, dims, bin_width=1 / 8)) == 4.0
