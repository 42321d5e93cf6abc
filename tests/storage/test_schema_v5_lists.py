"""Schema version 5: recommendations in three lists with reasons. A version-4 workspace keeps
its rows as the "all" list (no reasons); the key leads with (run, list); reads say clearly when a
run was stored before the lists, and name the allowed lists for an unknown one."""

from __future__ import annotations

import sqlite3

import pytest
import sqlite_utils

from storage.browse import (
    BrowseError,
    check_list_name,
    run_has_lists,
    user_detail,
    user_recommendations,
)
from storage.importer import run_import
from storage.presets import preset_spec
from storage.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from storage.workspace import Workspace
from tests.conftest import DEMO_SLICE


def _release_4_workspace(db) -> list[tuple]:
    """The demo slice at schema version 4 with one finished run's top-5 for three users, in
    the version-4 recommendations table; returns the rows."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for migration in MIGRATIONS[:4]:
        migration(sqlite_utils.Database(conn))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 4")
    v4 = Workspace(db, conn)
    run_import(v4, preset_spec("online-retail", DEMO_SLICE))
    rows = []
    with v4.transaction():
        conn.execute("INSERT INTO runs (id, created_at, status, config, active) "
                     "VALUES (1, '2026-01-05T10:00:00+00:00', 'done', '{}', 1)")
        users = [u for (u,) in conn.execute("SELECT id FROM users ORDER BY id LIMIT 3")]
        items = [i for (i,) in conn.execute("SELECT id FROM items ORDER BY id LIMIT 5")]
        rows = [(1, u, rank, item, 2.0 - rank / 10, rank % 2)
                for u in users for rank, item in enumerate(items, start=1)]
        conn.executemany("INSERT INTO recommendations VALUES (?, ?, ?, ?, ?, ?)", rows)
    v4.close()
    return rows


def test_a_version_4_workspace_keeps_its_recommendations_as_the_all_list(tmp_path):
    db = tmp_path / "v4.db"
    old = _release_4_workspace(db)
    with Workspace.open(db) as ws:
        assert ws.schema_version == SCHEMA_VERSION >= 5
        columns = [c[1] for c in ws.conn.execute("PRAGMA table_info(recommendations)")]
        assert columns == ["run_id", "list", "user_id", "rank", "item_id", "score",
                           "bought_before", "reason"]
        key = sorted((c[5], c[1]) for c in ws.conn.execute("PRAGMA table_info(recommendations)")
                     if c[5])
        assert [name for _pos, name in key] == ["run_id", "list", "user_id", "rank"]
        assert "recommendations_v4" not in ws.db.table_names()
        new = ws.conn.execute(
            "SELECT run_id, user_id, rank, item_id, score, bought_before, list, reason "
            "FROM recommendations ORDER BY run_id, user_id, rank").fetchall()
        assert new == [(*row, "all", None) for row in old]
        plan = " ".join(r[3] for r in ws.conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM recommendations WHERE run_id = 1 "
            "AND list = 'discover' AND user_id = 2"))
        assert "USING INDEX" in plan
        # Read back: the "all" list as before; the other lists refused with the reason.
        assert not run_has_lists(ws, 1)
        user = old[0][1]
        assert [r.rank for r in user_recommendations(ws, user, 1, 10)] == [1, 2, 3, 4, 5]
        assert all(r.reason is None for r in user_recommendations(ws, user, 1, 10))
        for name in ("buy-again", "discover"):
            with pytest.raises(BrowseError) as caught:
                user_recommendations(ws, user, 1, 10, name)
            assert str(caught.value) == ("run #1 was stored before buy-again/discover lists "
                                         "and reasons; retrain or replay it")
        detail = user_detail(ws, user)
        assert not detail.has_lists and list(detail.lists) == ["all"]
        assert detail.recommendations == detail.lists["all"]


def test_lists_are_read_by_name_and_an_unknown_one_is_named(tmp_path):
    db = tmp_path / "v4.db"
    old = _release_4_workspace(db)
    user = old[0][1]
    with Workspace.open(db) as ws:
        with ws.transaction() as conn:
            conn.execute("INSERT INTO recommendations (run_id, list, user_id, rank, item_id, "
                         "score, bought_before, reason) VALUES (1, 'discover', ?, 1, ?, 0.5, "
                         "0, 'new to this customer')", (user, old[1][3]))
        assert run_has_lists(ws, 1)
        (only,) = user_recommendations(ws, user, 1, 10, list="discover")
        assert (only.rank, only.item_key, only.reason) == (
            1, ws.conn.execute("SELECT external_id FROM items WHERE id = ?",
                               (old[1][3],)).fetchone()[0], "new to this customer")
        assert user_recommendations(ws, user, 1, 10, list="buy-again") == []
        detail = user_detail(ws, user)
        assert detail.has_lists and [len(detail.lists[n]) for n in detail.lists] == [5, 0, 1]
        for bad in ("nonsense", "Discover", "", None):
            with pytest.raises(BrowseError, match=r"unknown recommendation list .*: choose one "
                                                  r"of all, buy-again, discover$"):
                user_recommendations(ws, user, 1, 10, list=bad)
    assert check_list_name("buy-again") == "buy-again"
