"""Small text helpers shared by the screens (dates, numbers, metric cells)."""

from __future__ import annotations

from datetime import UTC, datetime

NO_RUN = "No run yet: train first (dynllm-tui train)"
NO_PROFILE = "No profile for this user yet: make profiles first (dynllm-tui profiles)"


def day(ts: int | None) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def minute(ts: int | None) -> str:
    return "—" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def money(value: float | None) -> str:
    return "—" if value is None else f"{value:,.2f}"


def metric(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def short_time(iso: str | None) -> str:
    """'2026-11-27T01:00:00+00:00' -> '2026-11-27 01:00'."""
    if not iso:
        return "—"
    return iso.replace("T", " ")[:16]


def bar(value: float, width: int = 30) -> str:
    """A horizontal bar of eighth blocks for a value in [0, 1]."""
    value = min(max(value, 0.0), 1.0)
    eighths = round(value * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + ("" if rest == 0 else " ▏▎▍▌▋▊▉"[rest])
