"""The status job: what a workspace holds (counts, time span, imports), for `dynllm-tui status`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storage.queries import workspace_status
from storage.workspace import Workspace


def status_job(db_path: str | Path | None) -> dict[str, Any]:
    """The workspace's summary as plain data (see storage.queries.workspace_status)."""
    with Workspace.open(db_path) as ws:
        return workspace_status(ws)
