"""Exceptions the profiling side of `models` raises for the caller to show."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """A language model could not be found or loaded; the message names the path and the fix."""


class EndpointError(RuntimeError):
    """An OpenAI-compatible server could not give a usable answer (unreachable, timed out, an
    HTTP error, a body that is not an OpenAI answer, a model it does not serve, vectors of
    another size); the message names the endpoint and what to do."""
