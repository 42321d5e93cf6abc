"""One connection to the workspace, shared by the screens' thread workers (reads, and the
one small write of choosing the active run).

The connection is read-only when the workspace cannot be written, so a workspace on a read-only
file or filesystem can still be browsed; any SQLite error (a damaged page, a write refused on a
read-only workspace) comes out as one line naming the file and what to do (`sqlite_error`).

Calls are serialised by a lock (an sqlite3 connection must not run two statements at once) and
the connection stays open, so that per-connection caches in `storage.browse` (the users table's
statistics) survive from one page to the next. Exports and jobs open their own connections.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from storage.errors import sqlite_error
from storage.workspace import Workspace, default_workspace_path

T = TypeVar("T")


class WorkspaceReader:
    def __init__(self, db: str | None, *, create: bool = True) -> None:
        """`create`: make the workspace when it is missing, for Home to offer the demo build.
        The CLI decides before the app starts whether a missing workspace may be made (only the
        default one, on a first run: a mistyped --db is refused there)."""
        self.db = db
        self.create = create
        self._lock = threading.Lock()
        self._ws: Workspace | None = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(workspace, *args, **kwargs)` on the shared connection (from a worker thread)."""
        with self._lock:
            if self._ws is None:
                where = Path(self.path_name())
                if self.create and (not where.exists() or where.stat().st_size == 0):
                    Workspace.open(self.db).close()
                self._ws = Workspace.open_for_browsing(self.db)
            try:
                return fn(self._ws, *args, **kwargs)
            except sqlite3.Error as exc:
                raise sqlite_error(self._ws.path, exc) from None

    @property
    def path(self) -> str:
        with self._lock:
            if self._ws is not None:
                return str(self._ws.path)
        return self.path_name()

    def path_name(self) -> str:
        """The workspace's path, known without opening it (it may be missing or damaged)."""
        return str(default_workspace_path() if self.db is None else Path(self.db).expanduser())

    def close(self) -> None:
        with self._lock:
            if self._ws is not None:
                self._ws.close()
                self._ws = None
