"""Reverse-SDE samplers (Song et al. 2021, "Score-Based Generative Modeling through SDEs") on any affine path:
Euler-Maruyama and predictor-corrector with a Langevin corrector.

In our time (t=0 source, t=1 data) every SDE

    dx = [v(x, t) + g(t)^2 / 2 * score(x, t)] dt + g(t) dW

has the marginals p_t of the probability-flow ODE dx = v dt (their Fokker-Planck equations agree), for any
g. The path's own diffusion, whose reverse SDE this is, has g(t)^2 = 2 sigma(t)^2 lambda'(t) (lambda =
log(alpha / sigma); on the VP path exactly beta, Song et al.'s reverse VP SDE); ``scale`` multiplies it
(0: the ODE). The score comes from the model through the path: score = -x0_hat / sigma (Tweedie), exact for
an independent standard-normal source. Where alpha(t) = 0 (the source end of the rectified, CondOT and
cosine paths) lambda' and so g are infinite: that step is the ODE's Euler step. The last step adds no noise
(``denoise=true``, Song et al.'s final denoising step).

Predictor-corrector (Song et al. 2021, Alg. 1-3): at each grid time, ``corrector_steps`` Langevin steps
x <- x + e score + sqrt(2 e) z with e = 2 (snr ||z|| / ||score||)^2 (norms per sample, averaged over the batch,
as Song et al.'s code), then one Euler-Maruyama step. 1 + corrector_steps NFE a step.
"""

from __future__ import annotations

import math

from torch import Tensor

from flowkit.conditioning import Cond
from flowkit.paths import AffinePath
from flowkit.samplers.base import Predictor, Sampler, register_sampler
from flowkit.samplers.ddim import at, coefficients, gaussian, noise_generator


def diffusion_squared(path: AffinePath, t: Tensor) -> float:
    """g(t)^2 = 2 sigma^2 lambda'(t) = 2 sigma (sigma alpha' / alpha - sigma'); inf where alpha = 0."""
    a, s = coefficients(path, t)
    if a == 0.0:
        return math.inf
    t64 = t.detach().to("cpu").double().reshape(1)
    da, ds = float(path.d_alpha(t64)), float(path.d_sigma(t64))
    return 2 * s * (s * da / a - ds)


def em_step(model: Predictor, x: Tensor, t: Tensor, s: Tensor, scale: float, cond: Cond | None,
            noise: Tensor | None) -> Tensor:
    """One Euler-Maruyama step of the reverse SDE from t to s (no noise when ``noise`` is None)."""
    path, t_b = model.path, at(t, x)
    x0_hat, x1_hat = model.endpoints(x, t_b, cond)
    drift = path.from_endpoints(x0_hat, x1_hat, t_b, "velocity")
    h = float(s - t)
    g2 = scale * diffusion_squared(path, t) if scale > 0 else 0.0
    if math.isinf(g2):
        return x + h * drift
    if g2 > 0:
        drift = drift - (g2 / (2 * coefficients(path, t)[1])) * x0_hat  # + g^2/2 score, score = -x0_hat / sigma
    x = x + h * drift
    return x if noise is None else x + math.sqrt(g2 * h) * noise


def check_scale(scale: float) -> None:
    if not scale >= 0:
        raise ValueError(f"scale={scale} is out of range; expected >= 0 (0: the probability-flow ODE, 1: the "
                         "path's reverse SDE)")


@register_sampler("em")
class EulerMaruyama(Sampler):
    """Euler-Maruyama on the reverse SDE (diffusion ``scale`` x the path's own), 1 NFE a step."""

    per_step = 1

    stochastic = True

    def __init__(self, scale: float = 1.0, denoise: bool = True, seed: int = 0) -> None:
        check_scale(scale)
        self.scale, self.denoise, self.seed = scale, denoise, seed
        self.stochastic = scale > 0

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        x, generator, last = x0, noise_generator(x0, self.seed), ts.shape[0] - 2
        for k, (t, s) in enumerate(zip(ts[:-1], ts[1:])):
            quiet = not self.stochastic or (self.denoise and k == last)
            x = em_step(model, x, t, s, self.scale, cond, None if quiet else gaussian(x, generator))
        return x, model.nfe


@register_sampler("pc")
class PredictorCorrector(Sampler):
    """Predictor-corrector: Langevin corrector steps (signal-to-noise ``snr``), then an Euler-Maruyama step."""

    stochastic = True

    def __init__(self, snr: float = 0.16, corrector_steps: int = 1, scale: float = 1.0, denoise: bool = True,
                 seed: int = 0) -> None:
        check_scale(scale)
        if not snr > 0 or corrector_steps < 0:
            raise ValueError(f"snr={snr}, corrector_steps={corrector_steps} are out of range; expected snr > 0 and "
                             "corrector_steps >= 0")
        self.snr, self.corrector_steps, self.scale, self.denoise, self.seed = snr, corrector_steps, scale, denoise, seed

    def nfe(self, steps: int | None) -> int | None:
        return None if steps is None else steps * (1 + self.corrector_steps)

    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        x, generator, last = x0, noise_generator(x0, self.seed), ts.shape[0] - 2
        for k, (t, s) in enumerate(zip(ts[:-1], ts[1:])):
            for _ in range(self.corrector_steps):
                score = model.predict("score", x, at(t, x), cond)
                z = gaussian(x, generator)
                ratio = z.flatten(1).norm(dim=1).mean() / score.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
                step = 2 * (self.snr * ratio) ** 2
                x = x + step * score + (2 * step).sqrt() * z
            quiet = self.denoise and k == last
            x = em_step(model, x, t, s, self.scale, cond, None if quiet else gaussian(x, generator))
        return x, model.nfe
