"""Distribution matching distillation plugin (method ``dmd2``), registered through the entry points in
pyproject.toml like any third party. It samples with flowkit's ``renoise:N``."""

from flowkit.plugins.dmd.method import DMD2, matching_gradient

__all__ = ["DMD2", "matching_gradient"]
