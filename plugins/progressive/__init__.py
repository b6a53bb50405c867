"""Progressive distillation plugin (method ``progressive``), registered through the entry points in
pyproject.toml like any third party."""

from flowkit.plugins.progressive.method import ProgressiveDistillation

__all__ = ["ProgressiveDistillation"]
