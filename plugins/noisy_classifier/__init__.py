"""Noisy-data classifier plugin: a time-conditioned classifier for classifier guidance, registered by entry
point (method and model ``noisy_classifier``)."""

from flowkit.plugins.noisy_classifier.method import NoisyClassifier
from flowkit.plugins.noisy_classifier.network import NoisyClassifierNet

__all__ = ["NoisyClassifier", "NoisyClassifierNet"]
