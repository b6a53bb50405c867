"""Samplers: the ``SAMPLERS`` registry, the contract (``Sampler``, ``Predictor``) and the built-in ones."""

from flowkit.samplers.base import (SAMPLERS, Predictor, Sampler, build_sampler, invert_with,
                                   parse_sampler, register_sampler, sample_with, sampler_spec, supports, why_not)
from flowkit.samplers import ddim, dpm, edm, ode, renoise, sde  # noqa: F401  (registers the built-in samplers)

__all__ = ["SAMPLERS", "Predictor", "Sampler", "build_sampler", "invert_with", "parse_sampler",
           "register_sampler", "sample_with", "sampler_spec", "supports", "why_not"]
