"""Export: what the dialog asks for, and running it headless (in the dialog's worker thread).

No Textual here: the dialog builds an `ExportRequest`, `run_export` opens its own connection to
the workspace and calls `storage.exports`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage.browse import search_user_ids
from storage.exports import ExportError, export_facet_weights, export_recommendations
from storage.workspace import Workspace

WHAT = {"recommendations": "Recommendations CSV", "facets": "Facet weights CSV"}
DEFAULT_FILES = {"recommendations": "recommendations.csv", "facets": "facet-weights.csv"}
MAX_LISTED_USERS = 30_000  # SQLite's limit on bound parameters is 32,766


@dataclass(frozen=True)
class ExportRequest:
    what: str  # "recommendations" | "facets"
    scope: str  # "all" | "search" | "user"
    path: str
    k: int = 10
    search: str = ""
    user: str = ""

    def target(self) -> Path:
        path = Path(self.path.strip()).expanduser()
        return path if path.is_absolute() else Path.cwd() / path


def request_users(ws: Workspace, request: ExportRequest) -> list[str] | None:
    """The customer ids the request covers (None: everyone)."""
    if request.scope == "user":
        if not request.user.strip():
            raise ExportError("give the customer id to export")
        return [request.user.strip()]
    if request.scope == "search" and request.search.strip():
        users = search_user_ids(ws, request.search)
        if not users:
            raise ExportError(f"no customer matches {request.search!r}")
        if len(users) > MAX_LISTED_USERS:
            raise ExportError(f"{len(users):,} customers match {request.search!r}: narrow the "
                              f"search to {MAX_LISTED_USERS:,} or export all users")
        return users
    return None


def run_export(
    db: str | Path | None,
    request: ExportRequest,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[int, Path]:
    """Write the file; returns (rows written, the file). Raises ExportError with a clear message
    (no run, unknown user, folder missing or not writable) and then writes nothing."""
    if not request.path.strip():
        raise ExportError("give a file name")
    if request.what == "recommendations" and request.k < 1:
        raise ExportError(f"k must be at least 1 (got {request.k})")
    out = request.target()
    with Workspace.open(db, create=False) as ws:
        users = request_users(ws, request)
        if request.what == "recommendations":
            count = export_recommendations(ws, out, k=request.k, users=users, progress=progress)
        else:
            count = export_facet_weights(ws, out, users=users)
    return count, out
