"""One connection to the workspace, shared by the screens' thread workers (reads, and the
one small write of choosing the active run).

The connection is read-only when the workspace cannot be written, so a workspace on a read-only
file or filesystem can still be browsed; any SQLite error (a damaged page, a write refused on a
read-only workspace) comes out as one line naming the file and what to do (`sqlite_error`).

Calls are serialised by a lock (an sqlite3 connection must not run two statements at once) and
the connection stays open, so that per-connection caches in `storage.browse` (the users table's
statistics) survive from one page to the next. Exports and jobs open their own connections.

`prefetch` answers a few questions early, in a thread of its own: the app's start-up runs Home's
queries while Python is still importing Textual, so that at 16x Online Retail their ~65 ms
(SQLite, which lets go of the GIL) overlap the import instead of following the first layout.
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
        # prefetch's answers, by function, and the workspace's data_version they were read at.
        self._early: dict[Callable[..., Any], Any] = {}
        self._early_version: int | None = None

    def _workspace(self) -> Workspace:
        """The shared connection, opened on first use (the caller holds the lock)."""
        if self._ws is None:
            where = Path(self.path_name())
            if self.create and (not where.exists() or where.stat().st_size == 0):
                Workspace.open(self.db).close()
            self._ws = Workspace.open_for_browsing(self.db)
        return self._ws

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(workspace, *args, **kwargs)` on the shared connection (from a worker thread)."""
        with self._lock:
            ws = self._workspace()
            try:
                if self._early:
                    if not (args or kwargs) and fn in self._early and self._early_valid(ws):
                        return self._early.pop(fn)
                    self._early.clear()  # another question first: perhaps this one's own write
                return fn(ws, *args, **kwargs)
            except sqlite3.Error as exc:
                raise sqlite_error(ws.path, exc) from None

    def prefetch(self, *fns: Callable[[Workspace], Any]) -> threading.Thread:
        """Start computing `fn(workspace)` for each of `fns` now, in a thread, on the shared
        connection; the next `call(fn)` (no further arguments) returns that answer instead of
        asking again, once. An answer is dropped, and asked again, when another connection has
        committed since (SQLite's data_version) or when any other call came first (this
        connection's own write). An error is not kept: the call meets it itself."""

        def run() -> None:
            with self._lock:
                try:
                    ws = self._workspace()
                    version = self._data_version(ws)
                    answers = {fn: fn(ws) for fn in fns}
                except Exception:  # the later call meets the error and reports it itself
                    return
                self._early, self._early_version = answers, version

        thread = threading.Thread(target=run, name="workspace-prefetch", daemon=True)
        thread.start()
        return thread

    def prefetched(self, *fns: Callable[[Workspace], Any]) -> list[Any] | None:
        """The prefetched answers of every one of `fns`, taken (once), when they are all ready
        and still valid; else None, at once: never waits for the prefetch or another call, so
        that a screen may ask from the UI thread (Home's first paint then has its data)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._ws is None or not all(fn in self._early for fn in fns):
                return None
            if not self._early_valid(self._ws):
                return None
            return [self._early.pop(fn) for fn in fns]
        finally:
            self._lock.release()

    def _early_valid(self, ws: Workspace) -> bool:
        """Whether no other connection has committed since the prefetch read (else its answers
        are dropped). One PRAGMA: SQLite keeps the number in memory, no table is read."""
        try:
            valid = self._data_version(ws) == self._early_version
        except sqlite3.Error:  # the question itself will meet and report the error
            valid = False
        if not valid:
            self._early.clear()
        return valid

    @staticmethod
    def _data_version(ws: Workspace) -> int:
        return int(ws.conn.execute("PRAGMA data_version").fetchone()[0])

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
            self._early.clear()
            if self._ws is not None:
                self._ws.close()
                self._ws = None
