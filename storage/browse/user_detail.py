"""One user in detail: purchases, profile snapshots, and a run's recommendations (three lists,
with reasons), facet weights and memory trace for that user."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.browse.common import BrowseError, parse_json
from storage.browse.runs import RunSummary, active_run, get_run
from storage.workspace import Workspace


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


# The lists a run stores per user (recommendations.list): every item, the items the user
# bought before, the items new to the user. Runs stored before the lists have only "all".
RECOMMENDATION_LISTS: tuple[str, ...] = ("all", "buy-again", "discover")
LIST_LABELS: dict[str, str] = {"all": "All", "buy-again": "Buy again", "discover": "Discover"}


@dataclass(frozen=True)
class Recommendation:
    rank: int
    item_key: str
    title: str | None
    score: float
    bought_before: bool
    reason: str | None = None  # None for a run stored before reasons were kept


def check_list_name(name: object) -> str:
    """`name` if it is one of RECOMMENDATION_LISTS, else one clear error naming them."""
    if name not in RECOMMENDATION_LISTS:
        raise BrowseError(f"unknown recommendation list {name!r}: choose one of "
                          f"{', '.join(RECOMMENDATION_LISTS)}")
    return str(name)


def run_has_lists(ws: Workspace, run_id: int) -> bool:
    """Whether run `run_id` stored the buy-again and discover lists (and reasons): a run replayed
    before they existed has its "all" list only. One look-up on the table's key."""
    return ws.conn.execute(
        "SELECT EXISTS (SELECT 1 FROM recommendations WHERE run_id = ? "
        "AND list IN ('buy-again', 'discover'))", (run_id,)).fetchone()[0] == 1


def stored_before_lists(run_id: int) -> str:
    """What the app and the exports say of a run stored before the lists and reasons."""
    return (f"run #{run_id} was stored before buy-again/discover lists and reasons; "
            "retrain or replay it")


@dataclass(frozen=True)
class FacetWeights:
    """The facet weights at one event of the user: facet name -> weight, in the order the run
    stored them (a run keeps whichever facets its model had: all of them, or one under a facet
    ablation)."""

    ts: int
    weights: dict[str, float]

    @property
    def facets(self) -> tuple[str, ...]:
        return tuple(self.weights)

    def as_dict(self) -> dict[str, float]:
        return dict(self.weights)


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
    recommendations: list[Recommendation] = field(default_factory=list)  # the "all" list
    # Every stored list by name ("all" included); only "all" for a run stored before the lists.
    lists: dict[str, list[Recommendation]] = field(default_factory=dict)
    has_lists: bool = False  # the run stored buy-again/discover lists and reasons
    facet_weights: list[FacetWeights] = field(default_factory=list)  # oldest first
    memory: list[MemoryPoint] = field(default_factory=list)  # oldest first


def _list(text: str | None) -> list[str]:
    value = parse_json(text, [])
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


def user_recommendations(ws: Workspace, user_id: int, run_id: int, k: int = 10,
                         list: str = "all") -> list[Recommendation]:
    """Top-`k` of one of a run's lists (RECOMMENDATION_LISTS) for one user, with reasons where
    the run stored them; bought-before is checked against the whole log, in one pass over the
    user's purchases (the interactions index is by user and time, not item). A list other than
    "all" of a run stored before the lists is refused with a clear message."""
    name = check_list_name(list)
    if name != "all" and not run_has_lists(ws, run_id):
        raise BrowseError(stored_before_lists(run_id))
    rows = ws.conn.execute(
        "SELECT r.rank, i.external_id, i.title, r.score, r.item_id, r.reason "
        "FROM recommendations r JOIN items i ON i.id = r.item_id "
        "WHERE r.run_id = ? AND r.list = ? AND r.user_id = ? AND r.rank <= ? ORDER BY r.rank",
        (run_id, name, user_id, k),
    ).fetchall()
    items = sorted({r[4] for r in rows})
    bought = {i for (i,) in ws.conn.execute(
        "SELECT DISTINCT item_id FROM interactions WHERE user_id = ? "
        f"AND item_id IN ({','.join('?' * len(items))})", (user_id, *items))} if items else set()
    return [Recommendation(rank, key, title, score, item in bought, reason)
            for rank, key, title, score, item, reason in rows]


def group_facet_rows(rows: Any) -> list[tuple[Any, int, dict[str, float]]]:
    """Long facet-weight rows (key, ts, facet, weight), ordered by key, ts and storage order,
    folded into one (key, ts, {facet: weight}) per event. An event ends where the key or time
    changes, or where a facet comes again (two events at the same time stay two)."""
    events: list[tuple[Any, int, dict[str, float]]] = []
    for key, ts, facet, weight in rows:
        if not events or events[-1][0] != key or events[-1][1] != ts or facet in events[-1][2]:
            events.append((key, ts, {}))
        events[-1][2][facet] = weight
    return events


def user_facet_weights(ws: Workspace, user_id: int, run_id: int) -> list[FacetWeights]:
    """The run's facet weights at each of the user's events, oldest first."""
    rows = ws.conn.execute(
        "SELECT user_id, ts, facet, weight FROM facet_weights "
        "WHERE run_id = ? AND user_id = ? ORDER BY ts, rowid", (run_id, user_id),
    )
    return [FacetWeights(ts, weights) for _user, ts, weights in group_facet_rows(rows)]


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
    run = active_run(ws) if run_id is None else get_run(ws, run_id)
    detail = UserDetail(
        user_id=row[0], external_id=row[1], attributes=parse_json(row[2], {}), events=events,
        baskets=baskets, first_ts=first, last_ts=last, total_value=value,
        timeline=user_timeline(ws, user_id, timeline_limit),
        profiles=user_profile_snapshots(ws, user_id), run=run,
    )
    if run is not None:
        detail.has_lists = run_has_lists(ws, run.id)
        names = RECOMMENDATION_LISTS if detail.has_lists else ("all",)
        # Three short index ranges: switching lists on screen then needs no query.
        detail.lists = {name: user_recommendations(ws, user_id, run.id, k, name)
                        for name in names}
        detail.recommendations = detail.lists["all"]
        detail.facet_weights = user_facet_weights(ws, user_id, run.id)
        detail.memory = user_memory_trace(ws, user_id, run.id)
    return detail
