"""MeanFlow plugin (method ``meanflow`` and its sampler ``meanflow``), registered through the entry points
in pyproject.toml like any third party."""

from flowkit.plugins.meanflow.method import MeanFlow, MeanFlowJumps

__all__ = ["MeanFlow", "MeanFlowJumps"]
