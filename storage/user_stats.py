"""The persisted per-user statistics table (`user_stats`, schema v6): what the Users and Segments
screens sort, filter and group by, kept in the workspace so that no connection rebuilds it.

It is derived data, refreshed in the writer's own transaction:
- an import calls `refresh_user_stats(conn)` before its COMMIT: only the users its new
  interactions (or new user rows) touch are recomputed, found from the largest interaction and
  user rowids the table was last refreshed at (`user_stats_state`);
- the `segment` column follows the profiles through triggers made by the migration, so every
  writer of profiles (the profile job, a test fixture, a hand edit) keeps it current;
- a reader that finds the table behind the data (a writer that bypassed the importer) refreshes
  it when it can write (`ensure_user_stats`), else shadows it for its own connection with a
  TEMP copy built from the data (a read-only workspace).

A user's `purchases`: their distinct (item, time) pairs, i.e. each item once per basket (one
basket is one time; several lines of one item in one basket are one purchase). `repeat_events`:
those purchases that re-buy an item the user had bought at an earlier time, i.e. purchases minus
distinct items. A segment's repeat share is sum(repeat_events) / sum(purchases) over its users.
Both come from one pass over the (user_id, ts) index (5 s at 16x Online Retail, 6.2M lines;
grouping by (user, item, time) instead cost 14 s).
"""

from __future__ import annotations

import json
import sqlite3

STATE_KEYS = ("interactions_rowid", "users_rowid", "attribute")
# Above this share of all users touched, one full rebuild is cheaper than a keyed refresh.
_FULL_REBUILD_SHARE = 0.5


def attribute_label(conn: sqlite3.Connection) -> str:
    """The user attribute the users table shows: country where the data has one, else the most
    common attribute key among the first users (demographics of Complete Journey)."""
    counts: dict[str, int] = {}
    for (attrs,) in conn.execute("SELECT attributes FROM users LIMIT 1000"):
        try:
            keys = json.loads(attrs) if attrs else {}
        except ValueError:  # one damaged cell must not stop the table
            keys = {}
        for key in keys if isinstance(keys, dict) else {}:
            counts[key] = counts.get(key, 0) + 1
    if "country" in counts or not counts:
        return "country"
    return max(sorted(counts), key=lambda k: counts[k])


def _data_marks(conn: sqlite3.Connection) -> tuple[int, int]:
    row = conn.execute("SELECT coalesce((SELECT max(rowid) FROM interactions), 0), "
                       "coalesce((SELECT max(rowid) FROM users), 0)").fetchone()
    return int(row[0]), int(row[1])


def stats_state(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT name, value FROM user_stats_state"))


def is_current(conn: sqlite3.Connection) -> bool:
    """Whether the table reflects every interaction and user row (two index look-ups)."""
    state = stats_state(conn)
    marks = _data_marks(conn)
    return (state.get("interactions_rowid"), state.get("users_rowid")) == tuple(map(str, marks))


def _select_sql(where_users: str, where_lines: str) -> str:
    """The statistics of the users selected by `where_users` (on users u) computed from their
    interactions selected by `where_lines` (on interactions): one row per user."""
    return (
        "SELECT u.id, u.external_id, json_extract(u.attributes, '$.\"' || :label || '\"'), "
        "coalesce(s.events, 0), coalesce(s.purchases, 0), "
        "coalesce(s.purchases - s.items, 0), s.first_ts, s.last_ts, "
        "(SELECT p.crowd_segment FROM profiles p WHERE p.user_id = u.id AND p.status = 'ok' "
        " ORDER BY p.as_of DESC LIMIT 1) "
        "FROM users u "
        # (item, time) as one integer: ids and Unix seconds are both below 2^32.
        "LEFT JOIN (SELECT user_id, count(*) AS events, min(ts) AS first_ts, max(ts) AS last_ts, "
        "           count(DISTINCT item_id) AS items, "
        "           count(DISTINCT item_id * 4294967296 + ts) AS purchases "
        f"           FROM interactions WHERE {where_lines} GROUP BY user_id) s "
        "  ON s.user_id = u.id "
        f"WHERE {where_users}"
    )


_COLUMNS = ("user_id, external_id, attribute, events, purchases, repeat_events, first_ts, "
            "last_ts, segment")


def _save_state(conn: sqlite3.Connection, marks: tuple[int, int], label: str) -> None:
    conn.executemany("INSERT OR REPLACE INTO user_stats_state (name, value) VALUES (?, ?)",
                     zip(STATE_KEYS, (str(marks[0]), str(marks[1]), label), strict=True))


def rebuild_user_stats(conn: sqlite3.Connection) -> int:
    """Recompute every user's row (inside the caller's transaction); returns the users."""
    label = attribute_label(conn)
    marks = _data_marks(conn)
    conn.execute("DELETE FROM user_stats")
    conn.execute(f"INSERT INTO user_stats ({_COLUMNS}) " + _select_sql("1", "1"),
                 {"label": label})
    _save_state(conn, marks, label)
    return conn.execute("SELECT count(*) FROM user_stats").fetchone()[0]


def refresh_user_stats(conn: sqlite3.Connection) -> int:
    """Bring the table up to date with the interactions and users added since its last refresh
    (inside the caller's transaction: an import calls it right before its COMMIT, so the table
    and the data commit together). Returns the number of users recomputed. A workspace at a
    schema before v6 (only ever built by hand, e.g. to test a migration) has no table: 0."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                    "AND name = 'user_stats'").fetchone() is None:
        return 0
    state = stats_state(conn)
    label = attribute_label(conn)
    if state.get("attribute") != label:  # the column itself changes meaning: every row
        return rebuild_user_stats(conn)
    marks = _data_marks(conn)
    seen_lines = int(state.get("interactions_rowid") or 0)
    seen_users = int(state.get("users_rowid") or 0)
    if (seen_lines, seen_users) == marks:
        return 0
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS user_stats_touched "
                 "(user_id INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM temp.user_stats_touched")
    conn.execute("INSERT OR IGNORE INTO temp.user_stats_touched "
                 "SELECT DISTINCT user_id FROM interactions WHERE rowid > ? "
                 "UNION SELECT id FROM users WHERE rowid > ?", (seen_lines, seen_users))
    touched = conn.execute("SELECT count(*) FROM temp.user_stats_touched").fetchone()[0]
    users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    if touched > _FULL_REBUILD_SHARE * users:
        conn.execute("DELETE FROM temp.user_stats_touched")
        return rebuild_user_stats(conn)
    keyed = "user_id IN (SELECT user_id FROM temp.user_stats_touched)"
    conn.execute(
        f"INSERT INTO user_stats ({_COLUMNS}) "
        + _select_sql("u.id IN (SELECT user_id FROM temp.user_stats_touched)", keyed)
        + " ON CONFLICT(user_id) DO UPDATE SET external_id = excluded.external_id, "
        "attribute = excluded.attribute, events = excluded.events, "
        "purchases = excluded.purchases, repeat_events = excluded.repeat_events, "
        "first_ts = excluded.first_ts, last_ts = excluded.last_ts, segment = excluded.segment",
        {"label": label},
    )
    conn.execute("DELETE FROM temp.user_stats_touched")
    _save_state(conn, marks, label)
    return touched


def shadow_user_stats(conn: sqlite3.Connection) -> None:
    """For a connection that cannot write (read-only workspace) and finds the table behind the
    data: a TEMP table of the same name and indexes, built from the data, which this
    connection's unqualified `user_stats` then means (SQLite looks in temp first)."""
    label = attribute_label(conn)
    conn.execute("DROP TABLE IF EXISTS temp.user_stats")
    conn.execute("CREATE TEMP TABLE user_stats AS SELECT * FROM main.user_stats LIMIT 0")
    conn.execute(f"INSERT INTO temp.user_stats ({_COLUMNS}) " + _select_sql("1", "1"),
                 {"label": label})
    for column in SORT_COLUMNS:
        conn.execute(f"CREATE INDEX temp.user_stats_tmp_{column} ON user_stats "
                     f"({column}, user_id)")


# Every column the Users screen sorts or filters by has an index (column, user_id).
SORT_COLUMNS = ("external_id", "attribute", "events", "first_ts", "last_ts", "segment")
