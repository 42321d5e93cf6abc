"""Exceptions the profiling side of `models` raises for the caller to show."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A language model could not be found or loaded; the message names the path and the fix."""
