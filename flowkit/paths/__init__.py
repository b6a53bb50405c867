"""Probability paths: ``PATHS`` registry, the affine base class and the built-in families.

Part of the math layer (with ``models``, ``couplings``, ``timesteps`` and ``conditioning``): imports only the
ground floor, ``flowkit.runtime`` and the rest of the math."""

from flowkit.paths.base import PATHS, PREDICTIONS, AffinePath, expand_like, register_path
from flowkit.paths import affine, vp  # noqa: F401  (registers the built-in paths)

__all__ = ["PATHS", "PREDICTIONS", "AffinePath", "expand_like", "register_path"]
