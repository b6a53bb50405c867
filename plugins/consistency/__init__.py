"""Consistency plugin: the discrete models (methods ``cd`` and ``ct``, ``method.py``) and the continuous-time
ones of sCM (``scd`` and ``sct``, ``continuous.py``), registered through the entry points in pyproject.toml like any
third party."""

from flowkit.plugins.consistency.continuous import ContinuousConsistencyDistillation, ContinuousConsistencyTraining
from flowkit.plugins.consistency.method import ConsistencyDistillation, ConsistencyTraining

__all__ = ["ConsistencyDistillation", "ConsistencyTraining", "ContinuousConsistencyDistillation",
           "ContinuousConsistencyTraining"]
