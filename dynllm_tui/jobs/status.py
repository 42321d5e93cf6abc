"""The status job: what a workspace holds (counts, time span, imports), for `dynllm-tui status`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storage.queries import workspace_status
from storage.workspace import Workspace


def status_job(db_path: str | Path | None) -> dict[str, Any]:
    """The workspace's summary as plain data (see storage.queries.workspace_status). Opens the
    workspace read-only: creates nothing, and works on a read-only file or filesystem."""
    with Workspace.open(db_path, readonly=True) as ws:
        return workspace_status(ws)
