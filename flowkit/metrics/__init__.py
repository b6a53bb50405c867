"""The metrics layer: how samples are scored, with no knowledge of datasets, methods or runs.

Distances between sample sets (``distances``: exact and sliced W2, MMD, Frechet distance, straightness), feature
networks for Frechet distances (``features``; ``inception`` for FID, ``digits_features`` for digits FD), the
log-likelihood of a flow (``likelihood``) and sample figures (``plots``). Imports the layers below: the ground
floor, ``flowkit.runtime``, the math (``paths``, ``models``, ``couplings``, ``timesteps``, ``conditioning``) and
``flowkit.samplers``.
"""
