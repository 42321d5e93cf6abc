"""Errors that the CLI and the UI show to the analyst as one clear line (no traceback)."""

from __future__ import annotations


class DynllmError(Exception):
    """Base of every expected error: the message is meant for the analyst."""


class WorkspaceError(DynllmError):
    """The workspace file cannot be used (not SQLite, newer schema, foreign database)."""


class InputError(DynllmError):
    """An input file is unusable. The message names the file and, where known, line and column."""

    def __init__(
        self,
        path: str,
        problem: str,
        *,
        line: int | None = None,
        column: str | None = None,
        line_word: str = "line",
    ) -> None:
        self.path = str(path)
        self.problem = problem
        self.line = line
        self.column = column
        where = self.path
        if line is not None:
            where += f", {line_word} {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")


class ImportCancelled(DynllmError):
    """The import was cancelled; the workspace was rolled back to where it was."""


class DamagedWorkspaceError(WorkspaceError):
    """The workspace file is damaged (cut short, a page overwritten): SQLite calls it malformed."""


class ReadOnlyWorkspaceError(WorkspaceError):
    """A write was attempted on a workspace that can only be read (file, folder or filesystem)."""


# SQLite's primary result codes (the low byte of an extended code) that this module words.
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_FULL, _SQLITE_NOTADB = 10, 11, 14, 13, 26


def damaged_message(path: object, detail: str) -> str:
    """One line naming the damaged file and the two ways out."""
    return (f"{path}: the workspace file is damaged ({detail}); restore it from a copy, or "
            f"salvage what is readable with `sqlite3 {path} .recover | sqlite3 recovered.db` "
            "and check the result with `dynllm-tui --db recovered.db check`")


def read_only_message(path: object, why: str = "the file, its folder or the filesystem "
                      "cannot be written") -> str:
    return (f"{path}: the workspace is read-only ({why}); reading commands (status, recommend, "
            "export, check, the app) work, but this one writes: copy the workspace somewhere "
            "writable or fix its permissions")


def sqlite_error(path: object, exc: BaseException) -> DynllmError:
    """An sqlite3 error met while using the workspace at `path`, as one line for the analyst.

    Classified by SQLite's result code rather than its wording, which varies between versions."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    detail = str(exc)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in detail:
        return DamagedWorkspaceError(damaged_message(path, detail))
    if primary == _SQLITE_READONLY or "readonly database" in detail:
        return ReadOnlyWorkspaceError(read_only_message(path))
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return WorkspaceError(f"{path}: busy, another process has been writing to it for too "
                              f"long ({detail}); try again when it has finished")
    if primary == _SQLITE_FULL:
        return WorkspaceError(f"{path}: the disk is full ({detail}); nothing was written, free "
                              "some space and try again")
    if primary in (_SQLITE_IOERR, _SQLITE_CANTOPEN):
        return WorkspaceError(f"{path}: cannot read or write the file ({detail}); check that "
                              "the disk and the file are there and accessible")
    return WorkspaceError(f"{path}: {detail}")
