"""Segments: the customers grouped by the crowd segment of their latest ok profile.

All in SQL over the persisted `user_stats` table (schema v6: one row per user with its segment,
events and re-buys, indexed by segment), paged, so that 100k users cost one grouped index scan
per page. Definitions:
- a user's segment is the `crowd_segment` of their latest ok profile; users without one are in
  no segment (counted apart: `SegmentsPage.unsegmented`);
- share = the segment's users / all users;
- repeat share = the share of the segment's purchases that re-buy an item the same user had
  bought in an earlier basket: sum(repeat_events) / sum(purchases) over its users, where a
  purchase is one item in one basket (an item's several lines in one basket count once, and a
  user's first basket with an item is not a repeat; see storage/user_stats.py);
- facet weights = per facet, the mean over the segment's users of the weight the run gave the
  facet at the user's latest event with weights; a facet no user of the segment had (absent:
  masked, never weighted) is None, never 0. None for every facet when there is no run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from storage.browse.common import BrowseError
from storage.browse.runs import RunSummary, active_run, get_run
from storage.browse.user_detail import run_has_lists, stored_before_lists
from storage.browse.users import ensure_user_stats
from storage.workspace import Workspace

DETAIL_LISTS = ("buy-again", "discover")
TOP_WITHIN = 10  # an item counts for a user when it is in the user's top 10 of the list


@dataclass(frozen=True)
class SegmentRow:
    segment: str
    users: int
    share: float  # of all users
    events: int  # purchase lines
    repeat_share: float | None  # None when the segment's users have no purchases
    facet_weights: dict[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class SegmentsPage:
    rows: list[SegmentRow]
    total: int  # segments matching the search
    offset: int
    users: int  # all users
    unsegmented: int  # users with no ok profile: in no segment
    run_id: int | None  # the run the facet weights come from (None: no finished run)
    facets: list[str]  # the run's facets, the columns of facet_weights


@dataclass(frozen=True)
class SegmentItem:
    item_key: str
    title: str | None
    users: int  # the segment's users who get the item in their top TOP_WITHIN
    mean_rank: float


@dataclass(frozen=True)
class SegmentDetail:
    row: SegmentRow
    users_total: int
    run_id: int | None
    facets: list[str]
    items: dict[str, list[SegmentItem]]  # list name -> most recommended items
    users_with_recommendations: int  # the segment's users the run has recommendations for
    note: str | None = None  # why lists are missing (no run, a run from before the lists)


def _run(ws: Workspace, run_id: int | None) -> RunSummary | None:
    if run_id is not None:
        return get_run(ws, run_id)
    return active_run(ws)


def _facet_order(ws: Workspace, run: RunSummary | None, seen: list[str]) -> list[str]:
    """The run's facets as its config lists them, then the other facets it stored weights for
    (those of its first rows, in storage order: a facet is a column of the whole run, so they
    show up at once; reading the first rows keeps this one index range, not a scan), then any
    other facet the segments' users had."""
    if run is None:
        return []
    names = list(run.profile_facets)
    for (facet,) in ws.conn.execute(
            "SELECT facet FROM (SELECT facet, rowid AS r FROM facet_weights WHERE run_id = ? "
            "LIMIT 1000) GROUP BY facet ORDER BY min(r)", (run.id,)):
        if facet not in names:
            names.append(facet)
    return names + [f for f in seen if f not in names]


def _search_clause(search: str) -> tuple[str, list[str]]:
    term = search.strip()
    if not term:
        return "", []
    pattern = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return " AND segment LIKE ? ESCAPE '\\'", [pattern]


def _facet_means(ws: Workspace, run_id: int, segments: list[str]
                 ) -> dict[str, dict[str, float]]:
    """segment -> facet -> mean weight at its users' latest weighted event (facets no user of
    the segment had are missing from the inner dict)."""
    if not segments:
        return {}
    marks = ",".join("?" * len(segments))
    out: dict[str, dict[str, float]] = {}
    for segment, facet, mean in ws.conn.execute(
        # CROSS JOIN fixes the order: each user's latest time from the index, then that
        # event's rows by the full index key (left to SQLite, it scans the run's rows: 2x).
        "SELECT s.segment, f.facet, avg(f.weight) FROM "
        "(SELECT user_id, max(ts) AS ts FROM facet_weights WHERE run_id = ? "
        " GROUP BY user_id) latest "
        "CROSS JOIN user_stats s ON s.user_id = latest.user_id "
        "CROSS JOIN facet_weights f ON f.run_id = ? AND f.user_id = latest.user_id "
        "  AND f.ts = latest.ts "
        f"WHERE s.segment IN ({marks}) GROUP BY s.segment, f.facet ORDER BY min(f.rowid)",
        (run_id, run_id, *segments),
    ):
        out.setdefault(segment, {})[facet] = mean
    return out


def _rows(ws: Workspace, grouped: list[tuple], users: int, run: RunSummary | None
          ) -> tuple[list[SegmentRow], list[str]]:
    means = _facet_means(ws, run.id, [g[0] for g in grouped]) if run is not None else {}
    seen = list(dict.fromkeys(f for m in means.values() for f in m))
    facets = _facet_order(ws, run, seen)
    rows = [
        SegmentRow(segment, n, n / users if users else 0.0, events,
                   repeats / purchases if purchases else None,
                   {f: means.get(segment, {}).get(f) for f in facets})
        for segment, n, events, purchases, repeats in grouped
    ]
    return rows, facets


def segments_page(ws: Workspace, *, run_id: int | None = None, offset: int = 0, limit: int = 50,
                  search: str = "") -> SegmentsPage:
    """One page of segments, most users first (then by name), whose name contains `search`;
    facet weights from run `run_id` (default: the active run)."""
    ensure_user_stats(ws)
    run = _run(ws, run_id)
    where, params = _search_clause(search)
    users, unsegmented = ws.conn.execute(
        "SELECT count(*), count(*) - count(segment) FROM user_stats").fetchone()
    total = ws.conn.execute(
        f"SELECT count(DISTINCT segment) FROM user_stats WHERE segment IS NOT NULL{where}",
        params).fetchone()[0]
    grouped = ws.conn.execute(
        "SELECT segment, count(*), sum(events), sum(purchases), sum(repeat_events) "
        "FROM user_stats "
        f"WHERE segment IS NOT NULL{where} GROUP BY segment "
        "ORDER BY count(*) DESC, segment LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
    rows, facets = _rows(ws, grouped, users, run)
    return SegmentsPage(rows, total, offset, users, unsegmented,
                        run.id if run is not None else None, facets)


def unknown_segment_message(ws: Workspace, segment: str) -> str:
    """One line for a segment name no user has, with the nearest names as a hint."""
    words = [w for w in segment.lower().split() if len(w) > 2][:3]
    hints: list[str] = []
    for word in words or [segment.lower()]:
        hints += [s for (s,) in ws.conn.execute(
            "SELECT DISTINCT segment FROM user_stats WHERE lower(segment) LIKE ? "
            "ORDER BY segment LIMIT 3", (f"%{word}%",))]
    hints = list(dict.fromkeys(hints))[:3]
    hint = f" (did you mean {', '.join(repr(h) for h in hints)}?)" if hints else \
        " (see `dynllm-tui segments` for the names)"
    return f"no segment named {segment!r} in this workspace{hint}"


def segment_detail(ws: Workspace, segment: str, *, run_id: int | None = None,
                   top: int = 10) -> SegmentDetail:
    """The segment's row, and the `top` items most recommended to its users in each of the
    run's buy-again and discover lists (an item counts for a user in their top TOP_WITHIN),
    with how many of its users get each. Raises BrowseError for a segment no user has."""
    ensure_user_stats(ws)
    run = _run(ws, run_id)
    grouped = ws.conn.execute(
        "SELECT segment, count(*), sum(events), sum(purchases), sum(repeat_events) "
        "FROM user_stats "
        "WHERE segment = ? GROUP BY segment", (segment,)).fetchall()
    if not grouped:
        raise BrowseError(unknown_segment_message(ws, segment))
    users = ws.conn.execute("SELECT count(*) FROM user_stats").fetchone()[0]
    rows, facets = _rows(ws, grouped, users, run)
    items: dict[str, list[SegmentItem]] = {}
    note = None
    covered = 0
    if run is None:
        note = "no finished run yet: train one to see what the segment is recommended"
    else:
        lists = DETAIL_LISTS
        if not run_has_lists(ws, run.id):
            note = stored_before_lists(run.id) + "; showing its combined list"
            lists = ("all",)
        covered = ws.conn.execute(
            "SELECT count(*) FROM user_stats s WHERE s.segment = ? AND EXISTS "
            "(SELECT 1 FROM recommendations r WHERE r.run_id = ? AND r.list = ? "
            " AND r.user_id = s.user_id)", (segment, run.id, lists[0])).fetchone()[0]
        for name in lists:
            items[name] = [SegmentItem(*r) for r in ws.conn.execute(
                "SELECT i.external_id, i.title, count(*) AS n, avg(r.rank) AS mean_rank "
                "FROM user_stats s JOIN recommendations r ON r.run_id = ? AND r.list = ? "
                "  AND r.user_id = s.user_id AND r.rank <= ? "
                "JOIN items i ON i.id = r.item_id "
                "WHERE s.segment = ? GROUP BY r.item_id "
                "ORDER BY n DESC, mean_rank, i.external_id LIMIT ?",
                (run.id, name, TOP_WITHIN, segment, top))]
    return SegmentDetail(rows[0], users, run.id if run is not None else None, facets, items,
                         covered, note)


def segment_user_ids(ws: Workspace, segment: str) -> list[str]:
    """External ids of the segment's users (what a segment's export takes)."""
    ensure_user_stats(ws)
    ids = [u for (u,) in ws.conn.execute(
        "SELECT external_id FROM user_stats WHERE segment = ? ORDER BY external_id", (segment,))]
    if not ids:
        raise BrowseError(unknown_segment_message(ws, segment))
    return ids
