"""Read-only questions about a workspace, shared by the CLI and the UI."""

from __future__ import annotations

import json
from typing import Any

from storage.browse.users import ensure_user_stats
from storage.timeparse import iso_utc
from storage.workspace import Workspace


def _count(ws: Workspace, table: str) -> int:
    exists = ws.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if not exists:
        return 0
    return ws.conn.execute(f"SELECT count(*) FROM [{table}]").fetchone()[0]


def workspace_status(ws: Workspace) -> dict[str, Any]:
    """Counts of every entity plus the list of imports, as plain JSON-ready data."""
    # The span from the persisted per-user statistics (indexed first/last columns): a min/max
    # over every interaction has no index to use and cost ~300 ms of Home's paint at 16x.
    ensure_user_stats(ws)
    span = ws.conn.execute("SELECT min(first_ts), max(last_ts) FROM user_stats").fetchone()
    imports = [
        {
            "id": row[0],
            "file": row[1],
            "preset": row[2],
            "sha256": row[3],
            "rows_read": row[4],
            "rows_kept": row[5],
            "rows_rejected": json.loads(row[6] or "{}"),
            "users_added": row[7],
            "items_added": row[8],
            "time_min": iso_utc(row[9]),
            "time_max": iso_utc(row[10]),
            "imported_at": row[11],
            "seconds": row[12],
        }
        for row in ws.conn.execute(
            "SELECT id, file, preset, sha256, rows_read, rows_kept, rows_rejected, users_added, "
            "items_added, ts_min, ts_max, imported_at, seconds FROM imports ORDER BY id"
        )
    ]
    return {
        "workspace": str(ws.path),
        "schema_version": ws.schema_version,
        "users": _count(ws, "users"),
        "items": _count(ws, "items"),
        "interactions": _count(ws, "interactions"),
        "profiles": _count(ws, "profiles"),
        "runs": _count(ws, "runs"),
        "rejects": ws.conn.execute(
            "SELECT coalesce(sum(last_line - line + 1), 0) FROM rejects").fetchone()[0],
        "time_min": iso_utc(span[0]),
        "time_max": iso_utc(span[1]),
        "imports": imports,
    }


def rejected_lines(ws: Workspace, import_id: int) -> dict[int, str]:
    """Every rejected line of an import with its reason (runs expanded)."""
    out: dict[int, str] = {}
    for reason, first, last in ws.conn.execute(
        "SELECT reason, line, last_line FROM rejects WHERE import_id = ?", (import_id,)
    ):
        out.update(dict.fromkeys(range(first, last + 1), reason))
    return out
