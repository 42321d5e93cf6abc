"""The workspace: one SQLite file (WAL mode) with a schema version and forward migrations.

A workspace is identified by `PRAGMA application_id`, so that opening some other SQLite file by
mistake is refused instead of silently adding our tables to it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from storage.errors import (
    DamagedWorkspaceError,
    ReadOnlyWorkspaceError,
    WorkspaceError,
    damaged_message,
    read_only_message,
    sqlite_error,
)
from storage.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

if TYPE_CHECKING:
    import sqlite_utils

SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_HEADER_SIZE = 100
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_CANTOPEN = 5, 6, 8, 14


def default_workspace_path() -> Path:
    """The workspace used when neither `--db` nor `DYNLLM_DB` names one."""
    env = os.environ.get("DYNLLM_DB")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("dynllm-tui", appauthor=False)) / "workspace.db"


def _check_is_sqlite(path: Path) -> None:
    """Refuse, before SQLite touches it, a path that cannot be a workspace (a folder, a device
    such as /dev/null, a file of another kind, a workspace cut short within its header)."""
    if not path.exists():
        return
    if path.is_dir():
        raise WorkspaceError(f"{path}: is a folder, not a workspace file")
    if not path.is_file():
        raise _no_workspace(path, "not a regular file but a device, pipe or socket")
    size = path.stat().st_size
    if size == 0:
        return
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise WorkspaceError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if size < SQLITE_HEADER_SIZE and SQLITE_MAGIC.startswith(head):
        # The start of an SQLite file with less than its 100-byte header: a workspace cut short.
        raise DamagedWorkspaceError(damaged_message(path, f"only {size} bytes, cut short"))
    if head != SQLITE_MAGIC:
        raise WorkspaceError(
            f"{path}: not an SQLite database, so not a dynllm-tui workspace "
            "(choose another file with --db or DYNLLM_DB)"
        )


def not_writable_reason(path: Path) -> str | None:
    """Why the existing workspace at `path` cannot be written, or None when it can.

    SQLite needs its folder too (WAL mode keeps `-wal` and `-shm` files beside the database).
    `os.access` answers for this process: root passes a chmod but not a read-only mount."""
    if not os.access(path, os.W_OK):
        return "the file cannot be written"
    if not os.access(path.parent, os.W_OK):
        return "its folder cannot be written, and SQLite keeps files beside the workspace"
    return None


def _no_workspace(path: Path, why: str = "") -> WorkspaceError:
    return WorkspaceError(
        f"no workspace at {path}{f' ({why})' if why else ''}: check --db / DYNLLM_DB, or create "
        "one with `dynllm-tui import FILE` or `dynllm-tui demo`")


def _connect(path: Path, *, readonly: bool, immutable: bool = False) -> sqlite3.Connection:
    if not readonly:
        return sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    # mode=ro: SQLite itself refuses every write, and creates no journal.
    uri = path.resolve().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)


def _cannot_share_memory(exc: sqlite3.Error) -> bool:
    """A read-only connection to a WAL database that could not create its `-shm` file beside
    the database (read-only folder or filesystem)."""
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    return code & 0xFF in (SQLITE_READONLY, SQLITE_CANTOPEN)


class Workspace:
    """An open workspace. Use `Workspace.open(path)`; close it (or use it as a context manager)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, *, readonly: bool = False) -> None:
        self.path = path
        self.conn = conn
        self.readonly = readonly
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
    def open(cls, path: str | os.PathLike[str] | None = None, *, create: bool = True,
             readonly: bool = False) -> Workspace:
        """Open (with `create`: make when missing, with its folders) the workspace at `path`.

        `readonly`: for commands that only read. The connection cannot write (SQLite's
        mode=ro), so a workspace on a read-only file, folder or filesystem can be viewed, and
        nothing (no folder, no file, no journal) is ever created. Without it, a workspace that
        cannot be written is refused at once with a "read-only" message."""
        path = Path(path).expanduser() if path is not None else default_workspace_path()
        if not path.exists() and (readonly or not create):
            raise _no_workspace(path)
        _check_is_sqlite(path)
        if path.exists() and path.stat().st_size == 0 and (readonly or not create):
            raise _no_workspace(path, "the file is empty")
        if readonly:
            return cls._open_readonly(path)
        if path.exists():
            why = not_writable_reason(path)
            if why:
                raise ReadOnlyWorkspaceError(read_only_message(path, why))
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WorkspaceError(f"{path}: cannot create the workspace's folder "
                                     f"({exc.strerror or exc})") from None
            if not os.access(path.parent, os.W_OK):
                raise ReadOnlyWorkspaceError(read_only_message(
                    path, "its folder cannot be written, so no workspace can be made there"))
        try:
            conn = _connect(path, readonly=False)
        except sqlite3.Error as exc:
            raise sqlite_error(path, exc) from None
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            _check_identity(path, conn, version, app_id)
            conn.execute("PRAGMA foreign_keys = ON")
            _retry_while_busy(lambda: _use_wal(conn))
            conn.execute("PRAGMA synchronous = NORMAL")
            if version < SCHEMA_VERSION:
                _retry_while_busy(lambda: _migrate(conn, version))
        except sqlite3.Error as exc:
            conn.close()
            raise sqlite_error(path, exc) from None
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    @classmethod
    def open_for_browsing(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        """The app's reader: writable when the workspace can be written (choosing the active
        run is its one write), read-only otherwise, so a read-only workspace can still be
        browsed. Never creates a workspace."""
        resolved = Path(path).expanduser() if path is not None else default_workspace_path()
        readonly = resolved.is_file() and not_writable_reason(resolved) is not None
        return cls.open(resolved, create=False, readonly=readonly)

    @classmethod
    def _open_readonly(cls, path: Path) -> Workspace:
        conn = None
        try:
            try:
                conn = _connect(path, readonly=True)
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if conn is not None:
                    conn.close()
                    conn = None
                if not _cannot_share_memory(exc):
                    raise
                # A WAL database whose folder cannot take a `-shm` file: read it as immutable,
                # which nobody can be changing through this read-only folder or filesystem.
                conn = _connect(path, readonly=True, immutable=True)
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("PRAGMA busy_timeout = 10000")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            _check_identity(path, conn, version, app_id)
            if version == 0:
                raise _no_workspace(path, "an empty SQLite database")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise sqlite_error(path, exc) from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if version < SCHEMA_VERSION:
            conn.close()
            if not_writable_reason(path) is not None:
                raise WorkspaceError(
                    f"{path}: workspace schema version {version} predates this dynllm-tui's "
                    f"{SCHEMA_VERSION} and the file is read-only, so it cannot be upgraded; "
                    "open it once from a writable copy")
            cls.open(path, create=False).close()  # upgrade it once, then read
            return cls._open_readonly(path)
        return cls(path, conn, readonly=True)

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
        if self.readonly:
            raise ReadOnlyWorkspaceError(read_only_message(
                self.path, "opened read-only by a command that only reads"))
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
        # The version and the tables in ONE statement, one snapshot: another opener may commit
        # the whole schema between our first look at the version and this count (the longer the
        # migrations, the likelier), and a file it has just made is a workspace.
        version, tables = conn.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), "
            "(SELECT count(*) FROM sqlite_master WHERE type = 'table')").fetchone()
        if tables and version == 0:
            raise WorkspaceError(
                f"{path}: an SQLite database with {tables} tables that is not a dynllm-tui "
                "workspace; choose another file"
            )


SETUP_WAIT_S = 10.0  # as long as the busy timeout: the same patience for the same lock


def _use_wal(conn: sqlite3.Connection) -> None:
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")


def _retry_while_busy(step: Callable[[], None]) -> None:
    """Run a set-up step that SQLite may refuse at once with "database is locked" instead of
    waiting (switching to WAL, or taking the write lock from a connection that has read, while
    several processes open one new workspace together): retry it for a while, then give up
    with SQLite's own error."""
    deadline = time.monotonic() + SETUP_WAIT_S
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
            if code not in (SQLITE_BUSY, SQLITE_LOCKED) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


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
