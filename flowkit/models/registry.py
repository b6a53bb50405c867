"""The ``MODELS`` registry (entry-point group ``flowkit.models``). A model (a backbone) is an ``nn.Module``
built with the data shape (injected) and its own width/depth options, called as ``model(x, t, emb=None)``;
to take more inputs than (x, t) it declares ``emb_dim``, ``time_dim`` and ``time_scale``
(``flowkit.models.network``)."""

from flowkit.registry import Registry

MODELS: Registry = Registry("model", "flowkit.models")
register_model = MODELS.register

MAX_DEPTH = 1000  # layers or blocks a built-in backbone takes: deeper, merely counting its parameters takes minutes
