"""Home's questions to the workspace, in a module without Textual: the command starts them
(`WorkspaceReader.prefetch`) before it imports the app, so that they run while Python imports
Textual, and Home's first load finds the answers ready (`dynllm_tui.cli._open_app`)."""

from __future__ import annotations

from storage.browse.runs import pipeline_status
from storage.queries import workspace_status

HOME_QUERIES = (workspace_status, pipeline_status)

__all__ = ["HOME_QUERIES", "pipeline_status", "workspace_status"]
