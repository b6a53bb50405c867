"""MeanFlow plugin (method ``meanflow``), registered through the entry points in pyproject.toml like
any third party."""

from plugins.meanflow.method import MeanFlow

__all__ = ["MeanFlow"]
