"""Distillation plugins. Each lives in its own folder and registers through the same entry-point
groups (``flowkit.methods``, ``flowkit.couplings``...) a third-party package would use; see
``[project.entry-points]`` in pyproject.toml."""
