"""User detail: helpers for plotext plots (down-sampling, dates on the x axis)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")
MAX_POINTS = 400


def thin(points: Sequence[T], limit: int = MAX_POINTS) -> list[T]:
    """At most `limit` evenly spaced points, always keeping the last one."""
    if len(points) <= limit:
        return list(points)
    step = len(points) / limit
    picked = [points[int(i * step)] for i in range(limit - 1)]
    return [*picked, points[-1]]


def days_since(ts: Sequence[int]) -> list[float]:
    """Times as days since the first one (plotext draws numbers; the title names the start)."""
    if not ts:
        return []
    start = ts[0]
    return [(t - start) / 86400 for t in ts]
