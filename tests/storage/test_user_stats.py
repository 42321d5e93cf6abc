"""Schema v6: the per-user statistics live in the workspace. Filled by the migration from a
hand-built v5 file, refreshed inside each import (only the users it touched, equal to a full
recompute), following profile writes, never rebuilt by a new connection, and still browsable
(and correct) on a read-only workspace. The Users page sorts by any column and filters by
segment and attribute."""

from __future__ import annotations

import sqlite3
from collections import defaultdict

import pytest
import sqlite_utils

from storage.browse import SORTS, BrowseError, users_page
from storage.importer import run_import
from storage.presets import preset_spec
from storage.profiles import save_profile
from storage.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from storage.user_stats import is_current, rebuild_user_stats
from storage.workspace import Workspace
from tests.conftest import DEMO_SLICE, write_head

COLUMNS = ("user_id, external_id, attribute, events, purchases, repeat_events, first_ts, "
           "last_ts, segment")


def _table(conn) -> list[tuple]:
    return conn.execute(f"SELECT {COLUMNS} FROM user_stats ORDER BY user_id").fetchall()


def _expected(conn) -> dict[int, tuple]:
    """Each user's statistics computed in Python from the raw rows (independent of the SQL):
    lines, purchases (distinct (item, time)), re-buys (purchases of an item at a later time than
    the user's first purchase of it), first and last time, country, segment of the latest ok
    profile."""
    lines: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for user, item, ts in conn.execute("SELECT user_id, item_id, ts FROM interactions"):
        lines[user].append((item, ts))
    latest: dict[int, tuple[int, str]] = {}
    for user, as_of, segment in conn.execute(
            "SELECT user_id, as_of, crowd_segment FROM profiles WHERE status = 'ok'"):
        if user not in latest or as_of > latest[user][0]:
            latest[user] = (as_of, segment)
    out = {}
    import json
    for user, external, attrs in conn.execute("SELECT id, external_id, attributes FROM users"):
        rows = lines.get(user, [])
        first_time: dict[int, int] = {}
        for item, ts in rows:
            first_time[item] = min(ts, first_time.get(item, ts))
        purchases = set(rows)
        repeats = sum(1 for item, ts in purchases if ts > first_time[item])
        times = [ts for _i, ts in rows]
        out[user] = (user, external, json.loads(attrs or "{}").get("country"), len(rows),
                     len(purchases), repeats, min(times) if times else None,
                     max(times) if times else None, latest.get(user, (0, None))[1])
    return out


def _v5_workspace(db) -> None:
    """The demo slice at schema version 5, with two ok profiles and a failed one."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for migration in MIGRATIONS[:5]:
        migration(sqlite_utils.Database(conn))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 5")
    v5 = Workspace(db, conn)
    run_import(v5, preset_spec("online-retail", DEMO_SLICE))
    with v5.transaction():
        first, second = [u for (u,) in conn.execute("SELECT id FROM users ORDER BY id LIMIT 2")]
        for user, as_of, status, segment in ((first, 100, "ok", "Old name"),
                                             (first, 200, "ok", "Gift buyer"),
                                             (first, 300, "failed", None),
                                             (second, 100, "ok", "Cafe owner")):
            conn.execute("INSERT INTO profiles (user_id, as_of, status, crowd_segment, model, "
                         "input_hash) VALUES (?, ?, ?, ?, 'm', 'h')",
                         (user, as_of, status, segment))
    v5.close()


def test_migration_v5_to_v6_fills_user_stats_from_the_data(tmp_path):
    db = tmp_path / "v5.db"
    _v5_workspace(db)
    with Workspace.open(db) as ws:
        assert ws.schema_version == SCHEMA_VERSION >= 6
        table = _table(ws.conn)
        expected = _expected(ws.conn)
        assert len(table) == 200 == len(expected)
        assert {row[0]: row for row in table} == expected
        segments = dict(ws.conn.execute(
            "SELECT segment, count(*) FROM user_stats WHERE segment IS NOT NULL "
            "GROUP BY segment"))
        assert segments == {"Gift buyer": 1, "Cafe owner": 1}  # latest ok, failed ignored
        assert sum(r[5] for r in table) > 0  # the demo's customers do re-buy
        assert sum(r[4] for r in table) < sum(r[3] for r in table)  # some lines repeat in a basket
        indexes = [row[1] for row in ws.conn.execute("PRAGMA index_list(user_stats)")]
        indexed = {ws.conn.execute(f"PRAGMA index_info({name})").fetchone()[2]
                   for name in indexes}
        assert set(SORTS.values()) <= indexed  # every sort column leads an index
        assert is_current(ws.conn)


def test_a_second_import_refreshes_only_the_touched_users_like_a_full_recompute(
        tmp_path, online_retail_path):
    first = write_head(online_retail_path, tmp_path / "a.csv", 8000)
    both = write_head(online_retail_path, tmp_path / "b.csv", 9000)
    # The second file: the header and lines 8001..9000 (some known customers, some new).
    lines = both.read_text(encoding="utf-8").splitlines(keepends=True)
    second = tmp_path / "c.csv"
    second.write_text(lines[0] + "".join(lines[8001:]), encoding="utf-8")
    db = tmp_path / "ws.db"
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", first))
        before = {row[0]: row for row in _table(ws.conn)}
        statements: list[str] = []
        ws.conn.set_trace_callback(statements.append)
        run_import(ws, preset_spec("online-retail", second))
        ws.conn.set_trace_callback(None)
        after = {row[0]: row for row in _table(ws.conn)}
        assert after == _expected(ws.conn)
        changed = {u for u in after if before.get(u) != after[u]}
        assert changed and len(changed) < len(after)  # some users untouched, some updated
        assert any(before[u][3] < after[u][3] for u in changed if u in before)
        assert set(after) - set(before)  # new customers got rows
        assert not any("DELETE FROM user_stats" in s for s in statements)  # keyed, not full
        with ws.transaction() as conn:
            rebuild_user_stats(conn)
        assert {row[0]: row for row in _table(ws.conn)} == after


def test_profiles_written_move_the_users_segment(demo_workspace):
    with Workspace.open(demo_workspace) as ws:
        user = ws.conn.execute("SELECT id FROM users ORDER BY id LIMIT 1").fetchone()[0]
        record = {"status": "ok", "crowd_segment": "Weekend crafter", "model": "m",
                  "input_hash": "h1"}
        save_profile(ws, user, 1_300_000_000, record)
        assert users_page(ws, segment="Weekend crafter").rows[0].user_id == user
        save_profile(ws, user, 1_310_000_000, {**record, "crowd_segment": "Party host",
                                                "input_hash": "h2"})
        save_profile(ws, user, 1_320_000_000, {**record, "status": "failed",
                                                "crowd_segment": None, "input_hash": "h3"})
        assert ws.conn.execute("SELECT segment FROM user_stats WHERE user_id = ?",
                               (user,)).fetchone()[0] == "Party host"
        assert users_page(ws, segment="Weekend crafter").total == 0
        with ws.transaction() as conn:
            conn.execute("DELETE FROM profiles WHERE user_id = ? AND as_of = 1310000000",
                         (user,))
        assert ws.conn.execute("SELECT segment FROM user_stats WHERE user_id = ?",
                               (user,)).fetchone()[0] == "Weekend crafter"


def test_a_new_connection_reads_the_first_page_without_rebuilding(demo_workspace):
    with Workspace.open_for_browsing(demo_workspace) as ws:
        statements: list[str] = []
        ws.conn.set_trace_callback(statements.append)
        page = users_page(ws)
        assert page.total == 200 and len(page.rows) == 100
        writes = [s for s in statements
                  if s.split()[0].upper() in ("CREATE", "INSERT", "DELETE", "DROP", "BEGIN")]
        assert writes == []
        assert len(statements) <= 8


def test_users_sort_by_every_column_and_both_directions(demo_workspace):
    with Workspace.open(demo_workspace) as ws:
        expected = _expected(ws.conn)
        position = {"events": 3, "first": 6, "last": 7, "id": 1, "attribute": 2, "segment": 8}
        for sort, index in position.items():
            for descending in (False, True):
                page = users_page(ws, sort=sort, descending=descending, limit=500)
                got = [r.user_id for r in page.rows]

                def key(u, index=index):
                    value = expected[u][index]
                    return (value is not None, value, u)  # SQLite: NULL sorts first

                assert got == sorted(expected, key=key, reverse=descending), (sort, descending)
        with pytest.raises(BrowseError, match="unknown sort 'price'"):
            users_page(ws, sort="price")


def test_users_filter_by_segment_and_attribute_with_search(demo_workspace):
    with Workspace.open(demo_workspace) as ws:
        countries = dict(ws.conn.execute(
            "SELECT json_extract(attributes, '$.country'), count(*) FROM users GROUP BY 1"))
        country = max(sorted(countries, key=str), key=lambda c: countries[c])
        page = users_page(ws, attribute=country, limit=500)
        assert page.total == countries[country] == len(page.rows)
        assert {r.attribute for r in page.rows} == {country}
        other = next(c for c in sorted(countries, key=str) if c != country and countries[c] > 1)
        users = [u for (u,) in ws.conn.execute(
            "SELECT id FROM users WHERE json_extract(attributes, '$.country') = ? ORDER BY id "
            "LIMIT 2", (other,))]
        for n, user in enumerate(users):
            save_profile(ws, user, 1_300_000_000, {"status": "ok", "crowd_segment": "Rare one",
                                                   "model": "m", "input_hash": f"h{n}"})
        page = users_page(ws, segment="Rare one")
        assert sorted(r.user_id for r in page.rows) == users and page.segment == "Rare one"
        assert users_page(ws, segment="Rare one", attribute=country).total == 0
        assert users_page(ws, segment="Rare one", attribute=other).total == 2
        one = ws.conn.execute("SELECT external_id FROM users WHERE id = ?",
                              (users[0],)).fetchone()[0]
        assert [r.user_id for r in users_page(ws, segment="Rare one", search=one).rows] == \
            [users[0]]
        assert users_page(ws, segment="No such segment").total == 0


def test_a_read_only_workspace_still_browses_even_when_the_table_is_behind(demo_workspace):
    with Workspace.open(demo_workspace) as ws, ws.transaction() as conn:
        # A writer that bypassed the importer: the table is now behind the data.
        user, item, ts = conn.execute(
            "SELECT user_id, item_id, max(ts) FROM interactions").fetchone()
        conn.execute("INSERT INTO interactions (user_id, item_id, ts, import_id) "
                     "VALUES (?, ?, ?, 1)", (user, item, ts + 86_400))
    # Read-only mode (SQLite refuses every write, as for a read-only file or filesystem).
    with Workspace.open(demo_workspace, readonly=True) as ws:
        assert ws.readonly and not is_current(ws.conn)
        page = users_page(ws, sort="last", limit=1)
        assert page.rows[0].user_id == user and page.rows[0].last_ts == ts + 86_400
        statements: list[str] = []
        ws.conn.set_trace_callback(statements.append)
        again = users_page(ws, sort="last", limit=1)
        assert again.rows == page.rows
        assert not [s for s in statements if "INTO temp.user_stats" in s]  # built once only
    with Workspace.open_for_browsing(demo_workspace) as ws:  # writable: refreshed in place
        assert users_page(ws, sort="last", limit=1).rows[0].last_ts == ts + 86_400
        assert is_current(ws.conn)
