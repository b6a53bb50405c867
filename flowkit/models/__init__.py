"""Velocity networks: ``MODELS`` registry of backbones (MLP for low-dimensional data; for images a small UNet,
an attention UNet in the ADM style and a DiT), composed with the inputs a method needs (``network.compose``).

Part of the math layer (with ``paths``, ``couplings``, ``timesteps`` and ``conditioning``): imports only the
ground floor, ``flowkit.runtime`` and the rest of the math."""

from flowkit.models.registry import MODELS, register_model
from flowkit.models.network import Conditioned, Input, compose, network_inputs
from flowkit.models import adm, dit, mlp, unet  # noqa: F401  (registers the built-in models)

__all__ = ["MODELS", "register_model", "Conditioned", "Input", "compose", "network_inputs"]
