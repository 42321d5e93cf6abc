"""The users table: pages of users with their statistics, sorted by any column, filtered by
search, segment and attribute, and look-up by store id.

`users_page` reads the workspace's persisted `user_stats` table (schema v6, kept current by
every import and profile write: storage/user_stats.py), so a new connection pays nothing before
its first page, and scrolling through 100k users costs one indexed LIMIT/OFFSET query per page.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.browse.common import BrowseError
from storage.user_stats import attribute_label as _label
from storage.user_stats import (
    is_current,
    rebuild_user_stats,
    refresh_user_stats,
    shadow_user_stats,
    stats_state,
)
from storage.workspace import Workspace

SORTS = {  # sort key -> column of user_stats (each has an index (column, user_id))
    "events": "events",
    "first": "first_ts",
    "last": "last_ts",
    "id": "external_id",
    "attribute": "attribute",
    "segment": "segment",
}


@dataclass(frozen=True)
class UserRow:
    user_id: int  # internal id (row key)
    external_id: str  # the store's customer id
    attribute: str | None  # country (Online Retail) or the main demographic attribute
    events: int
    first_ts: int | None
    last_ts: int | None
    segment: str | None  # crowd segment of the latest ok profile


@dataclass(frozen=True)
class UsersPage:
    rows: list[UserRow]
    total: int  # users matching the search and filters
    offset: int
    attribute_label: str  # what the attribute column holds ("country", ...)
    version: str = ""  # data_version() the page was read at
    segment: str | None = None  # the exact-match filters the page was read with
    attribute: str | None = None


def data_version(ws: Workspace) -> str:
    """Changes whenever users, interactions or profiles change (cheap: a few index look-ups),
    so that a screen can tell whether what it shows is stale."""
    return _stats_key(ws)


def _stats_key(ws: Workspace) -> str:
    one = ws.conn.execute(
        "SELECT (SELECT max(rowid) FROM interactions), (SELECT max(rowid) FROM users), "
        "(SELECT max(rowid) FROM profiles), (SELECT count(*) FROM profiles)"
    ).fetchone()
    return ":".join(str(x) for x in one)


def attribute_label(ws: Workspace) -> str:
    """The user attribute the users table shows: country where the data has one, else the most
    common attribute key among the first users (demographics of Complete Journey)."""
    return _label(ws.conn)


def ensure_user_stats(ws: Workspace, *, rebuild: bool = False) -> str:
    """Make sure `user_stats` reflects the data for this connection; returns the attribute
    label. Normally a two-look-up check and nothing more (imports and profile writes keep the
    table current). When a writer bypassed the importer: refreshed in place if this connection
    may write, else shadowed by a TEMP copy for this connection (read-only workspace), built
    once per data change. `rebuild` recomputes every row (the refresh key's "really reload")
    where writing is possible."""
    conn = ws.conn
    if rebuild and not ws.readonly:
        with ws.transaction() as tx:
            rebuild_user_stats(tx)
    if is_current(conn):
        if conn.execute("SELECT 1 FROM sqlite_temp_master WHERE type = 'table' "
                        "AND name = 'user_stats'").fetchone():  # a shadow from when it was not
            conn.execute("DROP TABLE temp.user_stats")
        return stats_state(conn).get("attribute") or _label(conn)
    if not ws.readonly:
        with ws.transaction() as tx:
            refresh_user_stats(tx)
        return stats_state(conn).get("attribute") or _label(conn)
    key = _stats_key(ws)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS browse_meta (name TEXT PRIMARY KEY, "
                 "value TEXT)")
    if dict(conn.execute("SELECT name, value FROM temp.browse_meta")).get("shadow") != key:
        shadow_user_stats(conn)
        conn.execute("INSERT OR REPLACE INTO temp.browse_meta VALUES ('shadow', ?)", (key,))
    return _label(conn)


def _where(search: str, segment: str | None, attribute: str | None) -> tuple[str, list[str]]:
    """WHERE clause (or "") of the search (substring of id, attribute or segment) and the
    exact-match filters."""
    clauses: list[str] = []
    params: list[str] = []
    term = search.strip()
    if term:
        pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        clauses.append("(external_id LIKE ? ESCAPE '\\' OR attribute LIKE ? ESCAPE '\\' "
                       "OR segment LIKE ? ESCAPE '\\')")
        params += [pattern] * 3
    if segment is not None:
        clauses.append("segment = ?")
        params.append(segment)
    if attribute is not None:
        clauses.append("attribute = ?")
        params.append(attribute)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def users_page(
    ws: Workspace,
    *,
    search: str = "",
    sort: str = "events",
    descending: bool = True,
    offset: int = 0,
    limit: int = 100,
    rebuild: bool = False,
    segment: str | None = None,
    attribute: str | None = None,
) -> UsersPage:
    """One page of the users table: users whose id, country (attribute) or profile segment
    contains `search` (case-insensitive), whose segment is exactly `segment` and attribute
    exactly `attribute` (each when given), ordered by `sort` (one of SORTS) then user id."""
    if sort not in SORTS:
        raise BrowseError(f"unknown sort {sort!r} (one of {', '.join(SORTS)})")
    label = ensure_user_stats(ws, rebuild=rebuild)
    where, params = _where(search, segment, attribute)
    direction = "DESC" if descending else "ASC"
    total = ws.conn.execute(f"SELECT count(*) FROM user_stats{where}", params).fetchone()[0]
    rows = ws.conn.execute(
        "SELECT user_id, external_id, attribute, events, first_ts, last_ts, segment "
        f"FROM user_stats{where} ORDER BY {SORTS[sort]} {direction}, user_id {direction} "
        "LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    return UsersPage([UserRow(*r) for r in rows], total, offset, label, _stats_key(ws),
                     segment, attribute)


def search_user_ids(ws: Workspace, search: str, *, segment: str | None = None,
                    attribute: str | None = None) -> list[str]:
    """External ids of every user matching `search` and the filters (what the export of a
    search result takes)."""
    ensure_user_stats(ws)
    where, params = _where(search, segment, attribute)
    return [u for (u,) in ws.conn.execute(
        f"SELECT external_id FROM user_stats{where} ORDER BY external_id", params)]


def find_user(ws: Workspace, external_id: str) -> int | None:
    """Internal id of the user with the store's id `external_id`, or None."""
    row = ws.conn.execute("SELECT id FROM users WHERE external_id = ?",
                          (external_id.strip(),)).fetchone()
    return row[0] if row else None
