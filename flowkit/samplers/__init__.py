"""Samplers: the ``SAMPLERS`` registry, the contract (``Sampler``, ``Predictor``) and the built-in ones."""

from flowkit.samplers.base import (SAMPLERS, Predictor, Sampler, check_samplers, parse_sampler, register_sampler,
                                   sample_with, supports, why_not)
from flowkit.samplers import ddim, ode, renoise  # noqa: F401  (registers the built-in samplers)

__all__ = ["SAMPLERS", "Predictor", "Sampler", "check_samplers", "parse_sampler", "register_sampler", "sample_with",
           "supports", "why_not"]
