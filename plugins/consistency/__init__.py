"""Consistency plugin (methods ``cd`` and ``ct``), registered through the entry points in pyproject.toml
like any third party."""

from flowkit.plugins.consistency.method import ConsistencyDistillation, ConsistencyTraining

__all__ = ["ConsistencyDistillation", "ConsistencyTraining"]
