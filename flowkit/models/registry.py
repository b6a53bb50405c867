"""The ``MODELS`` registry (entry-point group ``flowkit.models``). A model is an ``nn.Module``
built with the data shape (injected) and its own width/depth options, called as ``model(x, t)``."""

from flowkit.registry import Registry

MODELS: Registry = Registry("model", "flowkit.models")
register_model = MODELS.register
