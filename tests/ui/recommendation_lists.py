"""Buy-again and discover lists with reasons for the hand-written run of tests/ui/conftest.py,
written as the replay stores them (jobs.training.replay_into_workspace): per user, the items
bought before and the items new to them, each in the order of the "all" list, then more of
each kind; every row of every list with a deterministic reason. The second user gets no
discover list, as a customer who has bought everything the run could rank."""

from __future__ import annotations

from pathlib import Path

from storage.workspace import Workspace

NO_DISCOVER_POSITION = 1  # the second user of the run (most events first) has nothing new


def reason(bought: bool, rank: int, title: str | None) -> str:
    if bought:
        return (f"bought {rank + 1} times, last {3 * rank} days ago; interests: party goods, "
                f"kitchenware; like {title or 'ITEM'}")
    return f"new to this customer; interests: party goods, kitchenware; like {title or 'ITEM'}"


def add_lists(db: Path, run_id: int = 1) -> None:
    with Workspace.open(db) as ws, ws.transaction() as conn:
        users = [u for (u,) in conn.execute(
            "SELECT r.user_id FROM recommendations r JOIN interactions x "
            "ON x.user_id = r.user_id WHERE r.run_id = ? AND r.rank = 1 "
            "GROUP BY r.user_id ORDER BY count(*) DESC, r.user_id", (run_id,))]
        for n, user in enumerate(users):
            rows = conn.execute(
                "SELECT r.rank, r.item_id, r.score, r.bought_before, i.title "
                "FROM recommendations r JOIN items i ON i.id = r.item_id "
                "WHERE r.run_id = ? AND r.list = 'all' AND r.user_id = ? ORDER BY r.rank",
                (run_id, user)).fetchall()
            titles = {item: title for _r, item, _s, _b, title in rows}
            conn.executemany(
                "UPDATE recommendations SET reason = ? WHERE run_id = ? AND list = 'all' "
                "AND user_id = ? AND rank = ?",
                [(reason(bool(b), rank, titles[item]), run_id, user, rank)
                 for rank, item, _s, b, _t in rows])
            for name, bought in (("buy-again", 1), ("discover", 0)):
                if name == "discover" and n == NO_DISCOVER_POSITION:
                    continue
                picked = [(item, score) for _r, item, score, b, _t in rows if b == bought]
                conn.executemany(
                    "INSERT INTO recommendations (run_id, list, user_id, rank, item_id, score, "
                    "bought_before, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(run_id, name, user, rank, item, score, bought,
                      reason(bool(bought), rank, titles[item]))
                     for rank, (item, score) in enumerate(picked, start=1)])
