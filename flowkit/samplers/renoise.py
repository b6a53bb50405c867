"""Multistep sampling of a few-step generator (Song, Dhariwal, Chen & Sutskever 2023, Alg. 1), on the grid.

With the model's data prediction f(x, t) (x1_hat): x = f(x0, t_0); then for each later grid time t_k
before 1, re-noise along the path, x_{t_k} = alpha(t_k) x + sigma(t_k) z, and predict again,
x = f(x_{t_k}, t_k). N grid steps, N NFE. Each z is a fixed permutation of ``x0`` (the source draws are
i.i.d., so any source distribution works).

``pair`` re-orders z to pair with the current samples by a registered coupling that needs only the data
(``data_only``: ``ot``, ``sinkhorn``, or a plugin's; ``name:ARG`` gives its first option), solved in
blocks of ``block`` rows (``flowkit.couplings.pair_in_blocks``): a network trained on coupled pairs (e.g.
minibatch OT) has only seen interpolants of coupled pairs, and an independent z puts x_t off that
distribution. Default: independent z, the published algorithm.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor

from flowkit.conditioning import Cond
from flowkit.couplings import COUPLINGS, pair_in_blocks
from flowkit.errors import ConfigError, choices_hint
from flowkit.samplers.base import SAMPLERS, Predictor, Sampler, register_sampler


@register_sampler("renoise")
class Renoise(Sampler):
    """Predict the data, re-noise to the next grid time, predict again (Song et al. 2023, Alg. 1); 1 NFE a step."""

    ode = False  # needs a data prediction at any time, not an ODE: methods name it in their samplers
    per_step = 1

    def __init__(self, pair: str = "independent", block: int = 256) -> None:
        if block < 1:
            raise ValueError(f"block={block} is out of range; expected >= 1")
        # the valid choices: the couplings that need only the data (a class says so before it is built, so that
        # one needing a teacher is refused as such, not for the teacher it lacks; a factory's coupling once built)
        data_only = [name for name, c in COUPLINGS.items() if getattr(c, "data_only", False)]
        name = pair.partition(":")[0]
        if name not in COUPLINGS:
            raise ValueError(f"unknown coupling '{name}'; {choices_hint(name, data_only)}")
        factory = COUPLINGS.get(name)
        needs_more = inspect.isclass(factory) and not factory.data_only
        coupling = None if needs_more else COUPLINGS.build(COUPLINGS.parse(pair, "pair"))
        if coupling is None or not coupling.data_only:
            raise ValueError(f"pair='{pair}' needs more than the data (a network or a teacher); couplings that "
                             f"need only the data: {', '.join(data_only)}")
        self.coupling = None if coupling.independent else coupling
        self.block = block
        self.options = {"pair": pair, "block": block}  # what a method passes to renoise:N to get this sampler

    @torch.no_grad()
    def __call__(self, model: Predictor, x0: Tensor, ts: Tensor, *, cond: Cond | None = None) -> tuple[Tensor, int]:
        n = x0.shape[0]
        x = model.predict("x1", x0, ts[0].expand(n), cond)
        for k in range(1, ts.shape[0] - 1):
            t = ts[k].expand(n)
            noise = x0[torch.randperm(n, generator=torch.Generator().manual_seed(k)).to(x0.device)]
            if self.coupling is not None:
                noise = pair_in_blocks(self.coupling, x, noise, self.block)
            x = model.predict("x1", model.path.sample(noise, x, t), t, cond)
        return x, model.nfe


def renoising(owner: str, pair: str, block: int) -> Renoise:
    """The ``renoise`` sampler that a few-step method's options ``renoise`` / ``renoise_block`` name, built when the
    method is, so that a bad value is one ConfigError naming ``owner`` before training. The method passes its
    ``options`` to ``renoise:N`` (``Method.sampler_options``); one that re-noises in training pairs with its
    ``coupling`` (None: independent draws) too."""
    try:
        return SAMPLERS.build({"name": "renoise", "pair": pair, "block": block})
    except ConfigError as exc:
        raise ConfigError(f"{owner}: renoise='{pair}', renoise_block={block}: {exc}") from None
