"""Adversarial diffusion distillation (Sauer et al. 2023) adapted to flows."""

from flowkit.plugins.adversarial.method import AdversarialDistillation

__all__ = ["AdversarialDistillation"]
