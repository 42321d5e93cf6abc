"""One connection to the workspace, shared by the screens' thread workers (reads, and the
one small write of choosing the active run).

Calls are serialised by a lock (an sqlite3 connection must not run two statements at once) and
the connection stays open, so that per-connection caches in `storage.browse` (the users table's
statistics) survive from one page to the next. Exports and jobs open their own connections.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from storage.workspace import Workspace

T = TypeVar("T")


class WorkspaceReader:
    def __init__(self, db: str | None) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._ws: Workspace | None = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(workspace, *args, **kwargs)` on the shared connection (from a worker thread)."""
        with self._lock:
            if self._ws is None:
                self._ws = Workspace.open(self.db)
            return fn(self._ws, *args, **kwargs)

    @property
    def path(self) -> str:
        with self._lock:
            if self._ws is None:
                self._ws = Workspace.open(self.db)
            return str(self._ws.path)

    def close(self) -> None:
        with self._lock:
            if self._ws is not None:
                self._ws.close()
                self._ws = None
