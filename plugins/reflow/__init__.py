"""Reflow plugin: k-rectified flow (coupling ``reflow``) and its one-step distillation (method
``reflow_distill``), registered through the entry points in pyproject.toml like any third party."""

from flowkit.plugins.reflow.coupling import ReflowCoupling
from flowkit.plugins.reflow.distill import ReflowDistill

__all__ = ["ReflowCoupling", "ReflowDistill"]
