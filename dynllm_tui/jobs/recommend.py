"""The recommend job: one user's stored top-k of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storage.errors import DynllmError
from storage.workspace import Workspace


def recommend(db_path: str | Path | None, user: str, *, k: int = 10,
              run_id: int | None = None) -> dict[str, Any]:
    """A user's stored top-k of a run (default: the active one), with item titles."""
    from storage.exports import resolve_run

    with Workspace.open(db_path, create=False) as ws:
        row = ws.conn.execute("SELECT id FROM users WHERE external_id = ?", (user,)).fetchone()
        if row is None:
            raise DynllmError(f"unknown user id {user!r} in {ws.path}")
        run, model, _ = resolve_run(ws, run_id)
        items = [
            {"rank": rank, "item_id": key, "title": title, "score": round(score, 6),
             "bought_before": bool(bought)}
            for rank, key, title, score, bought in ws.conn.execute(
                "SELECT r.rank, i.external_id, i.title, r.score, r.bought_before "
                "FROM recommendations r JOIN items i ON i.id = r.item_id "
                "WHERE r.run_id = ? AND r.user_id = ? AND r.rank <= ? ORDER BY r.rank",
                (run, row[0], k),
            )
        ]
    return {"user_id": user, "run_id": run, "model": model, "items": items}
