"""Feature networks for Frechet distances: the contract, the registry, and FD / FID between two image sets.

A feature network is registered under a name (``@register_features("name")`` or the entry-point group
``flowkit.features``) as a factory returning a frozen ``nn.Module`` that maps images in [-1, 1] (N, C, H, W) to
features (N, D); the factory's ``metric`` attribute names the distance in them (default FD). A dataset is scored in the one named by ``data.features`` (``name`` or ``name:ARG``, ARG the
factory's first option), or in the one it names itself (the digits: ``digits``):

    ``inception``        FID: the InceptionV3 of FID (``flowkit.metrics.inception``) with its weights from disk:
                         ``inception:PATH``, or ``inception`` to find them in torchmetrics' / pytorch-fid's cache
    ``digits``           the penultimate features of the digits classifier shipped with flowkit (grey images
                         at 8 x 8 or a multiple of it, averaged back to 8 x 8)

The distance itself is ``flowkit.metrics.distances.frechet_distance``.
"""

from __future__ import annotations

import weakref
from functools import lru_cache

import torch
from torch import Tensor, nn

from flowkit.errors import ContractError
from flowkit.metrics.distances import frechet_distance
from flowkit.registry import Registry


def check_features(name: str, obj: object) -> None:
    if not callable(obj):
        raise ContractError(f"feature network '{name}': {obj!r} is not a factory returning an nn.Module")


FEATURES: Registry = Registry("feature network", "flowkit.features", check=check_features)
register_features = FEATURES.register


@register_features("inception")
def inception(weights: str = "") -> nn.Module:
    """The InceptionV3 of FID (2048 pool features), weights read from ``weights`` or found in torchmetrics' /
    pytorch-fid's cache; nothing is downloaded."""
    from flowkit.metrics.inception import load_inception

    return load_inception(weights)


inception.metric = "FID"  # the Frechet distance in these features has its own name


class DigitsFeatures(nn.Module):
    """The shipped digits classifier's penultimate features, of grey images averaged back to 8 x 8."""

    def __init__(self) -> None:
        super().__init__()
        from flowkit.metrics.digits_features import digits_classifier

        self.net = digits_classifier()

    def forward(self, x: Tensor) -> Tensor:
        from flowkit.metrics.digits_features import at_8x8

        return self.net.features(at_8x8(x))


@register_features("digits")
def digits() -> nn.Module:
    """The shipped digits classifier's penultimate features (64), grey images at 8 x 8 or a multiple of it."""
    return DigitsFeatures().eval().requires_grad_(False)


@lru_cache(maxsize=4)
def feature_network(spec: str) -> nn.Module:
    """The network ``spec`` names (``name`` or ``name:ARG``), built once per process."""
    return FEATURES.build(FEATURES.parse(spec, "data.features"))


def metric_name(spec: str) -> str:
    """The name a feature network gives its Frechet distance (its factory's ``metric``: FID for Inception's), FD
    by default (an unknown name is an error naming the valid ones)."""
    return getattr(FEATURES.get(spec.partition(":")[0]), "metric", "FD")


@torch.no_grad()
def features_of(spec: str, images: Tensor, batch: int = 250) -> Tensor:
    """Features (N, D) of ``images`` in [-1, 1], in batches, on the images' device."""
    net = feature_network(spec).to(images.device)
    return torch.cat([net(chunk) for chunk in images.detach().split(batch)]).double().cpu()


# The last reference's features: (spec, a weak reference to the tensor, its version counter, features). The weak
# reference dies with the tensor (nothing large is kept alive, and no other tensor can pass for it); an in-place
# change bumps the version and the features are taken again.
_last_reference: tuple[str, weakref.ref, int, Tensor] | None = None


def reference_features(spec: str, reference: Tensor) -> Tensor:
    """``features_of(spec, reference)``, taken once while the same, unchanged tensor is scored against again (compare
    scores every sampler against one reference)."""
    global _last_reference
    if reference.is_inference():  # keeps no version counter: taken every time
        return features_of(spec, reference)
    cached = _last_reference
    if cached is not None and cached[0] == spec and cached[1]() is reference and cached[2] == reference._version:
        return cached[3]
    features = features_of(spec, reference)
    _last_reference = (spec, weakref.ref(reference), reference._version, features)
    return features


def fd(samples: Tensor, reference: Tensor, spec: str) -> float:
    """The Frechet distance between two image sets in the features of ``spec`` (FID for ``inception``); the
    reference's features are reused while the same unchanged tensor comes again."""
    return frechet_distance(features_of(spec, samples), reference_features(spec, reference))
