"""What every job takes: a progress callback and a cancel flag."""

from __future__ import annotations

import threading
from collections.abc import Callable

Progress = Callable[[int, int, str], None]  # (done, total, phase)


class CancelFlag:
    """Set from another thread (Ctrl-C handler, UI cancel button); jobs poll it between chunks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()
