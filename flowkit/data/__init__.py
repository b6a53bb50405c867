"""The data layer: datasets (the contract, the 2-D toys, digits, user arrays and images, latent codes and
streamed shards), the encoders between data and latent space, and the (source, target) pair a run trains on.

What outside packages use: ``Dataset``, ``DATASETS`` and ``register_dataset`` (``flowkit.data.contract``);
``Encoder``, ``ENCODERS`` and ``register_encoder`` (``flowkit.data.encoders``). This layer imports the layers below
it (the ground floor, ``flowkit.runtime``, the math, ``flowkit.samplers``, ``flowkit.metrics``), never methods,
config, training or the interface; importing it never imports Lightning (``datamodule`` does, and only training
imports it).
"""

from flowkit.data.contract import DATASETS, Dataset, register_dataset
from flowkit.data import toys, digits, images, shards  # noqa: F401,E402  (register the built-in datasets)

__all__ = ["DATASETS", "Dataset", "register_dataset"]
