"""The recommend job: one user's stored top-k of a run, from one of its lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storage.browse import check_list_name, find_user, user_recommendations
from storage.errors import DynllmError
from storage.workspace import Workspace


def recommend(db_path: str | Path | None, user: str, *, k: int = 10,
              run_id: int | None = None, list_name: str = "all") -> dict[str, Any]:
    """A user's stored top-k of a run (default: the active one) from `list_name`: "all" (the
    combined ranking), "buy-again" (items the user bought before) or "discover" (items new to
    them), with item titles and, for runs that stored them, the reason for each item.

    `stored` says how many recommendations the run keeps for the user in that list: a `k` above
    it returns those, and the caller can say so. Reads only (the workspace may be read-only)."""
    from storage.exports import resolve_run

    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DynllmError(f"k (recommendations to show) must be a whole number of at least 1 "
                          f"(got {k!r})")
    name = check_list_name(list_name)
    with Workspace.open(db_path, readonly=True) as ws:
        row = ws.conn.execute("SELECT id FROM users WHERE external_id = ?", (user,)).fetchone()
        if row is None:
            raise DynllmError(f"unknown user id {user!r} in {ws.path}")
        run, model, _ = resolve_run(ws, run_id)
        stored = ws.conn.execute(
            "SELECT count(*) FROM recommendations WHERE run_id = ? AND list = ? "
            "AND user_id = ?", (run, name, row[0])).fetchone()[0]
        # Bounded by what is stored: a huge k would not fit an SQLite integer.
        recs = user_recommendations(ws, find_user(ws, user), run, min(k, max(stored, 1)), name)
    items = [{"rank": r.rank, "item_id": r.item_key, "title": r.title,
              "score": round(r.score, 6), "bought_before": r.bought_before, "reason": r.reason}
             for r in recs]
    return {"user_id": user, "run_id": run, "model": model, "list": name, "k": k,
            "stored": stored, "items": items}
