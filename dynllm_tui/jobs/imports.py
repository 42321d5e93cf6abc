"""The import job: one purchase log (or the Complete Journey tables) into the workspace."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dynllm_tui.jobs.control import Progress
from storage.importer import ImportSummary, run_import
from storage.presets import preset_spec
from storage.workspace import Workspace


def import_job(
    db_path: str | Path | None,
    path: str | Path | None,
    *,
    preset: str = "generic",
    mapping: list[str] | None = None,
    items: str | Path | None = None,
    users: str | Path | None = None,
    time_format: str | None = None,
    fmt: str | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    commit_point: Callable[[], bool] | None = None,
) -> ImportSummary:
    """Import one file (or the Complete Journey tables) into the workspace at `db_path`.
    `commit_point` is asked once right before COMMIT (see storage/importer/writing.py)."""
    spec = preset_spec(
        preset, path, mapping=mapping, items_path=items, users_path=users,
        time_format=time_format, fmt=fmt,
    )
    with Workspace.open(db_path) as ws:
        return run_import(ws, spec, progress=progress, should_cancel=cancel,
                          commit_point=commit_point)
