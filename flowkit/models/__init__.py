"""Velocity networks: ``MODELS`` registry of backbones (MLP for low-dimensional data, a small UNet for
images), composed with the inputs a method needs (``network.compose``)."""

from flowkit.models.registry import MODELS, register_model
from flowkit.models.network import Conditioned, compose, network_inputs
from flowkit.models import mlp, unet  # noqa: F401  (registers the built-in models)

__all__ = ["MODELS", "register_model", "Conditioned", "compose", "network_inputs"]
