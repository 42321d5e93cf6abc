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
