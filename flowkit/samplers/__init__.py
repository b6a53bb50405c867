"""The samplers layer: the ``SAMPLERS`` registry, the contract (``Sampler``, ``Predictor``), the built-in
samplers, time grids (``grids``) and torchdiffeq integration with its NFE count (``integrate``).

Imports the ground floor (``flowkit.errors``, ``flowkit.registry``), ``flowkit.runtime`` and the math (``paths``,
``models``, ``couplings``, ``timesteps``, ``conditioning``); never metrics, data, methods or anything above.
"""

from flowkit.samplers.base import (SAMPLERS, Predictor, Sampler, build_sampler, grid_of, invert_with,
                                   parse_sampler, register_sampler, sample_with, sampler_spec, supports, why_not)
from flowkit.samplers import ddim, dpm, edm, ode, renoise, sde  # noqa: F401  (registers the built-in samplers)
from flowkit.samplers.renoise import renoising

__all__ = ["SAMPLERS", "Predictor", "Sampler", "build_sampler", "grid_of", "invert_with", "parse_sampler",
           "register_sampler", "renoising", "sample_with", "sampler_spec", "supports", "why_not"]
