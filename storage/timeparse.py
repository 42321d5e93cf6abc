"""Turning time cells into Unix seconds (UTC).

Formats: "auto" (numbers are Unix seconds, text is ISO 8601), "iso", "unix", "unix_ms", or a
strftime pattern such as "%d/%m/%Y %H:%M". Times without a zone are taken as UTC, so that a log
written in store-local time keeps its order and spacing. Repeated cells (one invoice = many lines
with the same time) are parsed once and cached.
"""

from __future__ import annotations

from datetime import UTC, datetime

TIME_FORMATS = ("auto", "iso", "unix", "unix_ms")


class TimeParseError(ValueError):
    """The cell is not a time in the expected format (the importer adds file, line, column)."""


def _to_epoch(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp())


def describe_format(fmt: str) -> str:
    return {
        "auto": "Unix seconds or ISO 8601",
        "iso": "ISO 8601",
        "unix": "Unix seconds",
        "unix_ms": "Unix milliseconds",
    }.get(fmt, f"the format {fmt!r}")


class TimeParser:
    """Callable `parse(value) -> int` for one column's format; raises TimeParseError."""

    def __init__(self, fmt: str = "auto") -> None:
        if fmt not in TIME_FORMATS and "%" not in fmt:
            raise ValueError(
                f"unknown time format {fmt!r}: use one of {', '.join(TIME_FORMATS)} "
                "or a strftime pattern such as '%d/%m/%Y %H:%M'"
            )
        self.fmt = fmt
        self._cache: dict[object, int] = {}

    def __call__(self, value: object) -> int:
        try:
            return self._cache[value]
        except KeyError:
            pass
        except TypeError:  # unhashable: cannot be a time anyway
            raise TimeParseError(f"cannot read {value!r} as {describe_format(self.fmt)}") from None
        parsed = self._parse(value)
        if len(self._cache) < 2_000_000:
            self._cache[value] = parsed
        return parsed

    def _parse(self, value: object) -> int:
        fmt = self.fmt
        try:
            if isinstance(value, datetime):
                return _to_epoch(value)
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, int | float):
                if fmt in ("auto", "unix"):
                    return int(value)
                if fmt == "unix_ms":
                    return int(value // 1000)
                raise TypeError
            if not isinstance(value, str):
                raise TypeError
            text = value.strip()
            if not text:
                raise ValueError
            if fmt in ("unix", "unix_ms") or (fmt == "auto" and _looks_numeric(text)):
                number = float(text)
                if number != number or number in (float("inf"), float("-inf")):
                    raise ValueError
                return int(number // 1000) if fmt == "unix_ms" else int(number)
            if fmt in ("auto", "iso"):
                return _to_epoch(datetime.fromisoformat(text))
            return _to_epoch(datetime.strptime(text, fmt))
        except (ValueError, TypeError, OverflowError, OSError):
            raise TimeParseError(f"cannot read {value!r} as {describe_format(fmt)}") from None


def _looks_numeric(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.replace(".", "", 1).isdigit()


def iso_utc(ts: int | None) -> str | None:
    """Unix seconds -> '2011-12-09T12:50:00Z' (None stays None)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
