"""The workspace: one SQLite file (WAL mode) with a schema version and forward migrations.

A workspace is identified by `PRAGMA application_id`, so that opening some other SQLite file by
mistake is refused instead of silently adding our tables to it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from storage.errors import WorkspaceError
from storage.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    import sqlite_utils

SQLITE_MAGIC = b"SQLite format 3\x00"


def default_workspace_path() -> Path:
    """The workspace used when neither `--db` nor `DYNLLM_DB` names one."""
    env = os.environ.get("DYNLLM_DB")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("dynllm-tui", appauthor=False)) / "workspace.db"


def _check_is_sqlite(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    if path.is_dir():
        raise WorkspaceError(f"{path}: is a folder, not a workspace file")
    with path.open("rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise WorkspaceError(
            f"{path}: not an SQLite database, so not a dynllm-tui workspace "
            "(choose another file with --db or DYNLLM_DB)"
        )


class Workspace:
    """An open workspace. Use `Workspace.open(path)`; close it (or use it as a context manager)."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn
        self._db: sqlite_utils.Database | None = None

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the same connection, made on first use: importing sqlite-utils
        imports pandas when it is installed (~0.3 s), which the app's start-up should not pay."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    @property
    def checkpoint_dir(self) -> Path:
        """Sibling folder for model checkpoints: `<name>.db` -> `<name>.checkpoints/`."""
        return self.path.with_suffix(".checkpoints")

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Workspace:
        path = Path(path).expanduser() if path is not None else default_workspace_path()
        _check_is_sqlite(path)
        if not path.exists():
            if not create:
                raise WorkspaceError(f"{path}: no workspace there (import some data first)")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise WorkspaceError(f"{path}: not a usable SQLite database ({exc})") from exc
        try:
            _check_identity(path, conn, version, app_id)
            conn.execute("PRAGMA foreign_keys = ON")
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            if version < SCHEMA_VERSION:
                _migrate(conn, version)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, check_foreign_keys: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction: everything inside commits together or not at all.

        `check_foreign_keys=False` is for bulk loads whose ids the caller has just assigned from
        the same tables: it skips three index look-ups per inserted row."""
        if not check_foreign_keys:
            self.conn.execute("PRAGMA foreign_keys = OFF")  # only effective outside a transaction
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            if not check_foreign_keys:
                self.conn.execute("PRAGMA foreign_keys = ON")

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]


def _check_identity(path: Path, conn: sqlite3.Connection, version: int, app_id: int) -> None:
    if version > SCHEMA_VERSION:
        raise WorkspaceError(
            f"{path}: workspace schema version {version} is newer than this dynllm-tui "
            f"understands ({SCHEMA_VERSION}); upgrade dynllm-tui to open it"
        )
    if app_id not in (0, APPLICATION_ID):
        raise WorkspaceError(f"{path}: an SQLite database of another application, not a workspace")
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        if tables:
            raise WorkspaceError(
                f"{path}: an SQLite database with {tables} tables that is not a dynllm-tui "
                "workspace; choose another file"
            )


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Apply each migration after `version` in one transaction, so a failure changes nothing."""
    import sqlite_utils

    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process (or the app's reader and a job) may have created or migrated the file
        # between our first look and this write lock: migrate from what is there now.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        db = sqlite_utils.Database(conn)
        for target, migration in enumerate(MIGRATIONS, start=1):
            if target > version:
                migration(db)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
