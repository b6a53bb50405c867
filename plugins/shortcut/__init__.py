"""Shortcut models plugin (method ``shortcut`` and its sampler ``shortcut``), registered through the entry points
in pyproject.toml like any third party."""

from flowkit.plugins.shortcut.method import Shortcut, ShortcutJumps

__all__ = ["Shortcut", "ShortcutJumps"]
