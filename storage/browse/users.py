"""The users table: pages of users with their statistics, search, and look-up by store id.

`users_page` sorts and filters a per-connection TEMP table of user statistics (events, first
and last purchase, latest profile segment) that is built once and rebuilt only when the
workspace has changed, so scrolling through 100k users costs one indexed LIMIT/OFFSET query per
page instead of one aggregation over the whole log.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.browse.common import BrowseError, parse_json
from storage.workspace import Workspace

SORTS = {  # sort key -> column of temp.user_stats
    "events": "events",
    "first": "first_ts",
    "last": "last_ts",
    "id": "external_id",
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
    total: int  # users matching the search
    offset: int
    attribute_label: str  # what the attribute column holds ("country", ...)
    version: str = ""  # data_version() the page was read at


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
    counts: dict[str, int] = {}
    for (attrs,) in ws.conn.execute("SELECT attributes FROM users LIMIT 1000"):
        for key in parse_json(attrs, {}):
            counts[key] = counts.get(key, 0) + 1
    if "country" in counts or not counts:
        return "country"
    return max(sorted(counts), key=lambda k: counts[k])


def _ensure_user_stats(ws: Workspace, *, rebuild: bool = False) -> str:
    """Build (or reuse) temp.user_stats on this connection; returns the attribute label."""
    ws.conn.execute("CREATE TEMP TABLE IF NOT EXISTS browse_meta (name TEXT PRIMARY KEY, "
                    "value TEXT)")
    key = _stats_key(ws)
    meta = dict(ws.conn.execute("SELECT name, value FROM temp.browse_meta"))
    if not rebuild and meta.get("stats_key") == key:
        return meta["attribute"]
    label = attribute_label(ws)
    conn = ws.conn
    conn.execute("BEGIN")
    try:
        conn.execute("DROP TABLE IF EXISTS temp.user_stats")
        conn.execute(
            "CREATE TEMP TABLE user_stats AS "
            "SELECT u.id AS user_id, u.external_id AS external_id, "
            "json_extract(u.attributes, '$.' || ?) AS attribute, "
            "coalesce(s.events, 0) AS events, s.first_ts AS first_ts, s.last_ts AS last_ts, "
            "p.crowd_segment AS segment "
            "FROM users u "
            "LEFT JOIN (SELECT user_id, count(*) AS events, min(ts) AS first_ts, "
            "           max(ts) AS last_ts FROM interactions GROUP BY user_id) s "
            "  ON s.user_id = u.id "
            "LEFT JOIN (SELECT user_id, crowd_segment, max(as_of) FROM profiles "
            "           WHERE status = 'ok' GROUP BY user_id) p ON p.user_id = u.id",
            (label,),
        )
        for name, column in SORTS.items():
            conn.execute(f"CREATE INDEX temp.user_stats_{name} ON user_stats ({column}, user_id)")
        conn.execute("INSERT OR REPLACE INTO temp.browse_meta VALUES ('stats_key', ?), "
                     "('attribute', ?)", (key, label))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return label


def _search_clause(search: str) -> tuple[str, list[str]]:
    term = search.strip()
    if not term:
        return "", []
    pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return (" WHERE external_id LIKE ? ESCAPE '\\' OR attribute LIKE ? ESCAPE '\\' "
            "OR segment LIKE ? ESCAPE '\\'", [pattern] * 3)


def users_page(
    ws: Workspace,
    *,
    search: str = "",
    sort: str = "events",
    descending: bool = True,
    offset: int = 0,
    limit: int = 100,
    rebuild: bool = False,
) -> UsersPage:
    """One page of the users table: users whose id, country (attribute) or profile segment
    contains `search` (case-insensitive), ordered by `sort` (events, first, last, id)."""
    if sort not in SORTS:
        raise BrowseError(f"unknown sort {sort!r} (one of {', '.join(SORTS)})")
    label = _ensure_user_stats(ws, rebuild=rebuild)
    where, params = _search_clause(search)
    direction = "DESC" if descending else "ASC"
    total = ws.conn.execute(f"SELECT count(*) FROM temp.user_stats{where}", params).fetchone()[0]
    rows = ws.conn.execute(
        "SELECT user_id, external_id, attribute, events, first_ts, last_ts, segment "
        f"FROM temp.user_stats{where} ORDER BY {SORTS[sort]} {direction}, user_id {direction} "
        "LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    version = dict(ws.conn.execute("SELECT name, value FROM temp.browse_meta"))["stats_key"]
    return UsersPage([UserRow(*r) for r in rows], total, offset, label, version)


def search_user_ids(ws: Workspace, search: str) -> list[str]:
    """External ids of every user matching `search` (what the export of a search result takes)."""
    _ensure_user_stats(ws)
    where, params = _search_clause(search)
    return [u for (u,) in ws.conn.execute(
        f"SELECT external_id FROM temp.user_stats{where} ORDER BY external_id", params)]


def find_user(ws: Workspace, external_id: str) -> int | None:
    """Internal id of the user with the store's id `external_id`, or None."""
    row = ws.conn.execute("SELECT id FROM users WHERE external_id = ?",
                          (external_id.strip(),)).fetchone()
    return row[0] if row else None
