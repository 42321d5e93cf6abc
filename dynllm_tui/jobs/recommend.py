"""The recommend job: one user's stored top-k of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storage.errors import DynllmError
from storage.workspace import Workspace


def recommend(db_path: str | Path | None, user: str, *, k: int = 10,
              run_id: int | None = None) -> dict[str, Any]:
    """A user's stored top-k of a run (default: the active one), with item titles.

    `stored` says how many recommendations the run keeps for the user: a `k` above it returns
    those, and the caller can say so. Reads only (the workspace may be read-only)."""
    from storage.exports import resolve_run

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DynllmError(f"k (recommendations to show) must be a whole number of at least 1 "
                          f"(got {k!r})")
    with Workspace.open(db_path, readonly=True) as ws:
        row = ws.conn.execute("SELECT id FROM users WHERE external_id = ?", (user,)).fetchone()
        if row is None:
            raise DynllmError(f"unknown user id {user!r} in {ws.path}")
        run, model, _ = resolve_run(ws, run_id)
        stored = ws.conn.execute(
            "SELECT count(*) FROM recommendations WHERE run_id = ? AND user_id = ?",
            (run, row[0])).fetchone()[0]
        items = [
            {"rank": rank, "item_id": key, "title": title, "score": round(score, 6),
             "bought_before": bool(bought)}
            for rank, key, title, score, bought in ws.conn.execute(
                "SELECT r.rank, i.external_id, i.title, r.score, r.bought_before "
                "FROM recommendations r JOIN items i ON i.id = r.item_id "
                "WHERE r.run_id = ? AND r.user_id = ? AND r.rank <= ? ORDER BY r.rank",
                # Bounded by what is stored: a huge k would not fit an SQLite integer.
                (run, row[0], min(k, stored)),
            )
        ]
    return {"user_id": user, "run_id": run, "model": model, "k": k, "stored": stored,
            "items": items}
