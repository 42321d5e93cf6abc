"""The export job: a run's recommendations or facet weights to CSV.

`export_job` is what `dynllm-tui export` calls; the app's Export dialog builds an
`ExportRequest` and runs `run_export` in its worker thread. Both open their own connection to the
workspace and write through `storage.exports` (temporary file, then rename)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.vocabulary import FACETS
from storage.browse import get_run, search_user_ids
from storage.exports import (
    ExportError,
    export_facet_weights,
    export_recommendations,
    resolve_run,
)
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
    list_name: str = "all"  # recommendations: "all" | "buy-again" | "discover"
    reasons: bool = False  # recommendations: add the reason column

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
    with Workspace.open(db, readonly=True) as ws:  # reads only: works when read-only
        users = request_users(ws, request)
    return export_job(db, request.what, out, k=request.k, users=users, progress=progress,
                      list_name=request.list_name, reasons=request.reasons), out


def export_job(
    db: str | Path | None,
    what: str,
    out: str | Path,
    *,
    k: int = 10,
    run_id: int | None = None,
    users: list[str] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    list_name: str = "all",
    reasons: bool = False,
    segment: str | None = None,
) -> int:
    """Write `what` ("recommendations" or "facets") of run `run_id` (default: the active run)
    for `users` (default: everyone) to `out`; returns the number of rows written. For
    recommendations, `list_name` picks the list ("all", "buy-again", "discover") and `reasons`
    adds the reason column; a run stored before the lists is refused for either; `segment`
    keeps the users of that crowd segment."""
    if what not in WHAT:
        raise ExportError(f"unknown export {what!r}; choose one of {', '.join(WHAT)}")
    with Workspace.open(db, readonly=True) as ws:  # reads only: works when read-only
        if what == "recommendations":
            return export_recommendations(ws, out, k=k, run_id=run_id, users=users,
                                          progress=progress, list=list_name, reasons=reasons,
                                          segment=segment)
        if segment is not None:
            raise ExportError("--segment is an option of the recommendations export, not of "
                              "facets")
        if list_name != "all" or reasons:
            raise ExportError("a list and reasons are options of the recommendations export, "
                              "not of facets")
        run, _model, _finished = resolve_run(ws, run_id)
        return export_facet_weights(ws, out, run_id=run, users=users, facets=FACETS,
                                    include=get_run(ws, run).profile_facets)
