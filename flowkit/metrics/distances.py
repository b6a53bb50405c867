"""Sample-quality metrics (README, Benchmarks)."""

from __future__ import annotations

import torch
from torch import Tensor


def w2(x: Tensor, y: Tensor, num_iter_max: int = 10_000_000) -> float:
    """Exact 2-Wasserstein distance between two empirical measures (POT ``emd2``, squared Euclidean cost).

    POT's default iteration cap returns non-optimal plans from about 2,000 points, hence the larger cap.
    """
    x = x.detach().flatten(1).to("cpu", torch.float64)
    y = y.detach().flatten(1).to("cpu", torch.float64)
    cost = torch.cdist(x, y) ** 2
    a = torch.full((x.shape[0],), 1.0 / x.shape[0], dtype=torch.float64)
    b = torch.full((y.shape[0],), 1.0 / y.shape[0], dtype=torch.float64)
    import ot  # here, not at the top: see flowkit.couplings._pot

    return float(ot.emd2(a, b, cost, numItermax=num_iter_max)) ** 0.5


def sliced_w2(x: Tensor, y: Tensor, projections: int = 512, generator: torch.Generator | None = None) -> float:
    """Sliced 2-Wasserstein (Rabin et al. 2011): sqrt of the mean over random directions of the 1-D W2^2,
    from sorted projections (quantiles interpolated when the sample sizes differ). O(n log n): for large n."""
    x, y = x.detach().flatten(1).double().cpu(), y.detach().flatten(1).double().cpu()
    theta = torch.randn(x.shape[1], projections, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = (x @ theta).sort(0).values, (y @ theta).sort(0).values
    if px.shape[0] != py.shape[0]:
        q = torch.linspace(0, 1, max(px.shape[0], py.shape[0]), dtype=torch.float64)
        px, py = _quantiles(px, q), _quantiles(py, q)
    return float((px - py).pow(2).mean()) ** 0.5


def _quantiles(sorted_values: Tensor, q: Tensor) -> Tensor:
    return torch.quantile(sorted_values, q, dim=0)


def mmd2(x: Tensor, y: Tensor, scales: tuple[float, ...] = (0.5, 1.0, 2.0)) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012) with a sum of RBF kernels, bandwidths ``scales`` times the
    median pairwise distance of the pooled sample. Zero in expectation when x and y share a law."""
    x, y = x.detach().flatten(1).double().cpu(), y.detach().flatten(1).double().cpu()
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2)
    median = d2[d2 > 0].median().sqrt()
    kernel = sum(torch.exp(-d2 / (2 * (s * median) ** 2)) for s in scales)
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return float((kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1)) - 2 * kxy.mean())


def straightness(velocity_fn, trajectory: Tensor, times: Tensor) -> float:
    """Liu et al. 2022, eq. (2): S = int_0^1 E||(x1 - x0) - v(x_t, t)||^2 dt along solved paths,
    by the trapezoid rule over the trajectory's times. Zero iff every path is a straight line at
    constant speed."""
    x0, x1 = trajectory[0], trajectory[-1]
    chord = x1 - x0
    values = []
    with torch.no_grad():
        for x_t, t in zip(trajectory, times):
            v = velocity_fn(x_t, t.expand(x_t.shape[0]))
            values.append((chord - v).flatten(1).pow(2).sum(1).mean())
    return float(torch.trapezoid(torch.stack(values), times))


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2)) between Gaussian fits of two feature sets
    (Heusel et al. 2017), in float64 with covariances over n - 1; the last trace is the sum of the square roots
    of S_a S_b's eigenvalues (real parts), as torchmetrics computes FID."""
    a, b = a.detach().double().cpu().flatten(1), b.detach().double().cpu().flatten(1)
    cov_a, cov_b = torch.atleast_2d(a.T.cov()), torch.atleast_2d(b.T.cov())
    root_trace = torch.linalg.eigvals(cov_a @ cov_b).sqrt().real.sum()
    return float((a.mean(0) - b.mean(0)).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * root_trace)
