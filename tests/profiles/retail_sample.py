"""Real Online Retail customers as UserHistory records, read straight from the shared CSV
(no workspace: these tests are about `models/` alone). Online Retail, CC BY 4.0, see SOURCE.md
next to the file."""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from models.profiles.prompt import HistoryEvent, UserHistory


def load_histories(path: Path, n_users: int, *, max_rows: int = 60_000,
                   min_lines: int = 10) -> list[UserHistory]:
    """The first `n_users` customers (with at least `min_lines` purchase lines) in the first
    `max_rows` rows; each history ends before an `as_of` set at the user's last event, so the
    last basket is held out and the snapshot has no leak by construction."""
    events: dict[str, list[HistoryEvent]] = defaultdict(list)
    country: dict[str, str] = {}
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i >= max_rows:
                break
            if not row["CustomerID"] or row["InvoiceNo"].startswith("C"):  # guests, returns
                continue
            user = row["CustomerID"].split(".")[0]
            ts = int(datetime.fromisoformat(row["InvoiceDate"]).replace(tzinfo=UTC).timestamp())
            events[user].append(HistoryEvent(ts, row["StockCode"], row["Description"], None,
                                             None, float(row["Quantity"])))
            country[user] = row["Country"]
    out = []
    for user, evs in events.items():
        as_of = max(e.ts for e in evs)
        before = [e for e in evs if e.ts < as_of]
        if len(before) >= min_lines:
            out.append(UserHistory(user, {"country": country[user]}, before, as_of=as_of))
        if len(out) == n_users:
            break
    return out


def short_history_users(db, n: int = 4) -> list[str]:
    """External ids of the first `n` customers (by id) with 8-20 lines in workspace `db`:
    short histories, so short prompts."""
    from storage.workspace import Workspace

    with Workspace.open(db, create=False) as ws:
        rows = ws.conn.execute(
            "SELECT u.external_id FROM interactions x JOIN users u ON u.id = x.user_id "
            "GROUP BY x.user_id HAVING count(*) BETWEEN 8 AND 20 ORDER BY u.external_id "
            "LIMIT ?", (n,)).fetchall()
    assert len(rows) == n, f"only {len(rows)} customers with 8-20 lines in {db}"
    return [r[0] for r in rows]
