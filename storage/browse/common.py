"""What every browse module shares: the error a screen gets, and lenient JSON reading."""

from __future__ import annotations

import json
from typing import Any

from storage.errors import DynllmError


class BrowseError(DynllmError):
    """A screen asked for something that is not there (unknown user, unknown run)."""


def parse_json(text: str | None, default: Any) -> Any:
    """The JSON value stored in `text`, or `default` when the cell is empty or not JSON: a
    screen shows what it can instead of failing on one damaged cell."""
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default
