"""Velocity networks: ``MODELS`` registry, MLP for low-dimensional data, a small UNet for images."""

from flowkit.models.registry import MODELS, register_model
from flowkit.models import mlp, unet  # noqa: F401  (registers the built-in models)

__all__ = ["MODELS", "register_model"]
