"""What the workbench screens show: read-only questions about a workspace, as plain data.

Plain functions over an open `Workspace`, no Textual, so that every screen's content is also
testable and scriptable headless. The one write here is `set_active_run` (the run whose
recommendations the app shows).

The users table is paged: `users_page` sorts and filters a per-connection TEMP table of user
statistics (events, first and last purchase, latest profile segment) that is built once and
rebuilt only when the workspace has changed, so scrolling through 100k users costs one indexed
LIMIT/OFFSET query per page instead of one aggregation over the whole log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from storage.errors import DynllmError
from storage.workspace import Workspace

FACETS = ("crowd_segment", "interests", "categories", "brands")
FACET_LABELS = {"crowd_segment": "crowd segment", "interests": "interests",
                "categories": "categories", "brands": "brands"}
SORTS = {  # sort key -> column of temp.user_stats
    "events": "events",
    "first": "first_ts",
    "last": "last_ts",
    "id": "external_id",
}
# hit@10 equals recall@10 with one positive per test event, so it is left out here
HEADLINE_METRICS = ("recall@10", "ndcg@10", "mrr")


class BrowseError(DynllmError):
    """A screen asked for something that is not there (unknown user, unknown run)."""


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunSummary:
    id: int
    status: str
    created_at: str
    finished_at: str | None
    config: dict[str, Any]
    device: str | None
    epochs_done: int | None
    best_epoch: int | None
    history: list[dict[str, Any]]
    test_metrics: dict[str, Any]
    report: list[dict[str, Any]]
    seconds: float | None
    error: str | None
    active: bool

    @property
    def model(self) -> str:
        return str(self.config.get("model_name", "dynllm"))

    @property
    def headline(self) -> dict[str, float]:
        """Recall@10, NDCG@10 and MRR on the test part, full-ranking protocol."""
        return headline_metrics(self.test_metrics)


def _json(text: str | None, default: Any) -> Any:
    if not text:
        return default
    try:
        return json.loads(text)
    except ValueError:
        return default


def headline_metrics(test_metrics: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of a run's test metrics, whether stored flat ({"recall@10": ...})
    or per protocol ({"full": {...}, "paper": {...}}); the full ranking wins."""
    metrics = test_metrics.get("full", test_metrics) if isinstance(test_metrics, dict) else {}
    if not isinstance(metrics, dict):
        return {}
    return {k: float(metrics[k]) for k in HEADLINE_METRICS
            if isinstance(metrics.get(k), int | float)}


_RUN_COLUMNS = ("id, status, created_at, finished_at, config, device, epochs_done, best_epoch, "
                "history, test_metrics, report, seconds, error, active")


def _run(row: tuple) -> RunSummary:
    (rid, status, created, finished, config, device, epochs, best, history, test, report,
     seconds, error, active) = row
    report_rows = _json(report, [])
    if isinstance(report_rows, dict):  # {"rows": [...]} or {method: {...}}
        report_rows = report_rows.get("rows", [dict(method=k, **v) for k, v in
                                               report_rows.items() if isinstance(v, dict)])
    return RunSummary(
        id=rid, status=status, created_at=created, finished_at=finished,
        config=_json(config, {}), device=device, epochs_done=epochs, best_epoch=best,
        history=_json(history, []), test_metrics=_json(test, {}),
        report=[r for r in report_rows if isinstance(r, dict)], seconds=seconds, error=error,
        active=bool(active),
    )


def list_runs(ws: Workspace) -> list[RunSummary]:
    """Every run, newest first."""
    rows = ws.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY id DESC").fetchall()
    return [_run(r) for r in rows]


def active_run(ws: Workspace) -> RunSummary | None:
    """The run the app shows: the finished run marked active, else the latest finished run
    (the same choice as the CSV exports make)."""
    row = ws.conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = 'done' "
        "ORDER BY active DESC, id DESC LIMIT 1"
    ).fetchone()
    return _run(row) if row else None


def set_active_run(ws: Workspace, run_id: int) -> None:
    """Make `run_id` the active run (only finished runs have recommendations to show)."""
    row = ws.conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        raise BrowseError(f"no run {run_id} in this workspace")
    if row[0] != "done":
        raise BrowseError(f"run {run_id} is {row[0]}, not finished: only a finished run can be "
                          "the active one")
    with ws.transaction() as conn:
        conn.execute("UPDATE runs SET active = (id = ?)", (run_id,))


# ---------------------------------------------------------------- home


@dataclass(frozen=True)
class PipelineStatus:
    users: int
    profiles_ok: int
    profiles_failed: int
    users_profiled: int  # users with at least one ok snapshot
    users_without_profile: int
    runs: list[RunSummary]
    active_run_id: int | None

    @property
    def runs_done(self) -> int:
        return sum(r.status == "done" for r in self.runs)


def pipeline_status(ws: Workspace) -> PipelineStatus:
    """Profiles made / failed / users still without one, and the runs with their metrics."""
    by_status = dict(ws.conn.execute("SELECT status, count(*) FROM profiles GROUP BY status"))
    users = ws.conn.execute("SELECT count(*) FROM users").fetchone()[0]
    profiled = ws.conn.execute(
        "SELECT count(DISTINCT user_id) FROM profiles WHERE status = 'ok'").fetchone()[0]
    active = active_run(ws)
    return PipelineStatus(
        users=users,
        profiles_ok=by_status.get("ok", 0),
        profiles_failed=by_status.get("failed", 0),
        users_profiled=profiled,
        users_without_profile=users - profiled,
        runs=list_runs(ws),
        active_run_id=active.id if active else None,
    )


# ---------------------------------------------------------------- users table


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
        for key in _json(attrs, {}):
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


# ---------------------------------------------------------------- user detail


@dataclass(frozen=True)
class TimelineEvent:
    ts: int
    basket: str | None
    item_key: str
    title: str | None
    quantity: float | None
    value: float | None


@dataclass(frozen=True)
class ProfileSnapshot:
    as_of: int
    status: str
    crowd_segment: str | None
    interests: list[str]
    preferred_categories: list[str]
    favored_brands: list[str]
    categories_source: str | None
    brands_source: str | None
    n_events: int | None
    model: str
    error: str | None


@dataclass(frozen=True)
class Recommendation:
    rank: int
    item_key: str
    title: str | None
    score: float
    bought_before: bool


@dataclass(frozen=True)
class FacetWeights:
    ts: int
    crowd_segment: float
    interests: float
    categories: float
    brands: float

    def as_dict(self) -> dict[str, float]:
        return {f: getattr(self, f) for f in FACETS}


@dataclass(frozen=True)
class MemoryPoint:
    ts: int
    norm: float | None
    drift: float | None
    x: float | None
    y: float | None


@dataclass
class UserDetail:
    user_id: int
    external_id: str
    attributes: dict[str, Any]
    events: int
    baskets: int
    first_ts: int | None
    last_ts: int | None
    total_value: float | None
    timeline: list[TimelineEvent]  # newest first, at most `timeline_limit`
    profiles: list[ProfileSnapshot]  # oldest first
    run: RunSummary | None  # the run shown (active unless asked for another)
    recommendations: list[Recommendation] = field(default_factory=list)
    facet_weights: list[FacetWeights] = field(default_factory=list)  # oldest first
    memory: list[MemoryPoint] = field(default_factory=list)  # oldest first


def _list(text: str | None) -> list[str]:
    value = _json(text, [])
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def user_timeline(ws: Workspace, user_id: int, limit: int = 2000, offset: int = 0
                  ) -> list[TimelineEvent]:
    """The user's purchases, newest first, with item titles (a page of them)."""
    rows = ws.conn.execute(
        "SELECT x.ts, x.basket, i.external_id, i.title, x.quantity, x.value "
        "FROM interactions x JOIN items i ON i.id = x.item_id "
        "WHERE x.user_id = ? ORDER BY x.ts DESC, x.id DESC LIMIT ? OFFSET ?",
        (user_id, limit, offset),
    ).fetchall()
    return [TimelineEvent(*r) for r in rows]


def user_profile_snapshots(ws: Workspace, user_id: int) -> list[ProfileSnapshot]:
    rows = ws.conn.execute(
        "SELECT as_of, status, crowd_segment, interests, preferred_categories, favored_brands, "
        "categories_source, brands_source, n_events, model, error FROM profiles "
        "WHERE user_id = ? ORDER BY as_of", (user_id,),
    ).fetchall()
    return [
        ProfileSnapshot(r[0], r[1], r[2], _list(r[3]), _list(r[4]), _list(r[5]), r[6], r[7],
                        r[8], r[9], r[10])
        for r in rows
    ]


def user_recommendations(ws: Workspace, user_id: int, run_id: int, k: int = 10
                         ) -> list[Recommendation]:
    """Top-`k` of a run for one user; bought-before is checked against the whole log, in one
    pass over the user's purchases (the interactions index is by user and time, not item)."""
    rows = ws.conn.execute(
        "SELECT r.rank, i.external_id, i.title, r.score, r.item_id "
        "FROM recommendations r JOIN items i ON i.id = r.item_id "
        "WHERE r.run_id = ? AND r.user_id = ? AND r.rank <= ? ORDER BY r.rank",
        (run_id, user_id, k),
    ).fetchall()
    items = sorted({r[4] for r in rows})
    bought = {i for (i,) in ws.conn.execute(
        "SELECT DISTINCT item_id FROM interactions WHERE user_id = ? "
        f"AND item_id IN ({','.join('?' * len(items))})", (user_id, *items))} if items else set()
    return [Recommendation(rank, key, title, score, item in bought)
            for rank, key, title, score, item in rows]


def user_facet_weights(ws: Workspace, user_id: int, run_id: int) -> list[FacetWeights]:
    rows = ws.conn.execute(
        "SELECT ts, crowd_segment, interests, categories, brands FROM facet_weights "
        "WHERE run_id = ? AND user_id = ? ORDER BY ts, rowid", (run_id, user_id),
    ).fetchall()
    return [FacetWeights(*r) for r in rows]


def user_memory_trace(ws: Workspace, user_id: int, run_id: int) -> list[MemoryPoint]:
    rows = ws.conn.execute(
        "SELECT ts, norm, drift, x, y FROM memory_trace WHERE run_id = ? AND user_id = ? "
        "ORDER BY ts, rowid", (run_id, user_id),
    ).fetchall()
    return [MemoryPoint(*r) for r in rows]


def user_detail(
    ws: Workspace,
    user_id: int,
    *,
    k: int = 10,
    run_id: int | None = None,
    timeline_limit: int = 2000,
) -> UserDetail:
    """Everything the user detail screen shows, in one call."""
    row = ws.conn.execute(
        "SELECT id, external_id, attributes FROM users WHERE id = ?", (user_id,)
    ).fetchone()
    if row is None:
        raise BrowseError(f"no user with internal id {user_id}")
    events, baskets, first, last, value = ws.conn.execute(
        "SELECT count(*), count(DISTINCT basket), min(ts), max(ts), sum(value) "
        "FROM interactions WHERE user_id = ?", (user_id,),
    ).fetchone()
    if run_id is None:
        run = active_run(ws)
    else:
        found = ws.conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?",
                                (run_id,)).fetchone()
        if found is None:
            raise BrowseError(f"no run {run_id} in this workspace")
        run = _run(found)
    detail = UserDetail(
        user_id=row[0], external_id=row[1], attributes=_json(row[2], {}), events=events,
        baskets=baskets, first_ts=first, last_ts=last, total_value=value,
        timeline=user_timeline(ws, user_id, timeline_limit),
        profiles=user_profile_snapshots(ws, user_id), run=run,
    )
    if run is not None:
        detail.recommendations = user_recommendations(ws, user_id, run.id, k)
        detail.facet_weights = user_facet_weights(ws, user_id, run.id)
        detail.memory = user_memory_trace(ws, user_id, run.id)
    return detail
