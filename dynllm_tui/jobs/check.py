"""The check job: is the workspace file sound? (`dynllm-tui check`)

Read-only: SQLite's `PRAGMA integrity_check` reads every page and index, then each table is
counted. A damaged workspace gives `ok: False` with SQLite's findings and one line saying what to
do; a workspace too damaged to open at all raises the same kind of one-line error on opening.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from storage.errors import damaged_message
from storage.workspace import Workspace

MAX_PROBLEMS = 100  # SQLite stops its report there; the first few say enough


def check_job(db_path: str | Path | None) -> dict[str, Any]:
    """{workspace, ok, problems, counts, message}: `problems` lists SQLite's findings (empty
    when sound), `counts` the rows of each table that could be counted."""
    problems: list[str] = []
    counts: dict[str, int] = {}
    with Workspace.open(db_path, readonly=True) as ws:
        try:
            # Row by row: SQLite may report a few pages, then stop on one it cannot read.
            for (finding,) in ws.conn.execute(f"PRAGMA integrity_check({MAX_PROBLEMS})"):
                if finding != "ok":
                    problems.append(finding)
        except sqlite3.DatabaseError as exc:  # too damaged even to list what is wrong
            problems.append(str(exc))
        try:
            tables = [row[0] for row in ws.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite%' ORDER BY rowid")]
        except sqlite3.DatabaseError as exc:
            problems.append(f"the list of tables: {exc}")
            tables = []
        for table in tables:
            try:
                counts[table] = ws.conn.execute(f"SELECT count(*) FROM [{table}]").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                problems.append(f"table {table}: {exc}")
        path = ws.path
    message = ("" if not problems else
               damaged_message(path, f"integrity check: {problems[0]}"
                               + (f" and {len(problems) - 1} more" if len(problems) > 1 else "")))
    return {"workspace": str(path), "ok": not problems, "problems": problems, "counts": counts,
            "message": message}
