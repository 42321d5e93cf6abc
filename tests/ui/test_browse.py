"""storage.browse, the queries behind the screens, on the real demo workspace (200 Online Retail
customers), checked against plain SQL over the same tables."""

from __future__ import annotations

import json

import pytest

from models.vocabulary import FACETS
from storage.browse import (
    BrowseError,
    active_run,
    find_user,
    group_facet_rows,
    headline_metrics,
    list_runs,
    pipeline_status,
    search_user_ids,
    set_active_run,
    user_detail,
    users_page,
)
from storage.workspace import Workspace
from tests.ui.conftest import TOP_USER, add_profiles, add_run, add_unfinished_run


@pytest.fixture
def ws(demo_workspace_file):
    with Workspace.open(demo_workspace_file) as ws:
        yield ws


def test_first_page_is_the_most_active_users(ws):
    page = users_page(ws, limit=10)
    assert page.total == 200 and page.offset == 0 and len(page.rows) == 10
    assert page.attribute_label == "country"
    expected = ws.conn.execute(
        "SELECT u.external_id, count(*), min(ts), max(ts) FROM interactions x "
        "JOIN users u ON u.id = x.user_id GROUP BY x.user_id ORDER BY count(*) DESC, "
        "x.user_id DESC LIMIT 10").fetchall()
    assert [(r.external_id, r.events, r.first_ts, r.last_ts) for r in page.rows] == expected
    assert page.rows[0].external_id == TOP_USER and page.rows[0].attribute == "EIRE"


def test_pages_cover_every_user_once(ws):
    seen = []
    offset = 0
    while True:
        page = users_page(ws, sort="last", descending=False, offset=offset, limit=37)
        if not page.rows:
            break
        seen += [r.user_id for r in page.rows]
        offset += len(page.rows)
    assert len(seen) == len(set(seen)) == 200
    lasts = [users_page(ws, sort="last", descending=False, limit=200).rows[i].last_ts
             for i in (0, 199)]
    assert lasts[0] <= lasts[1]


@pytest.mark.parametrize("sort,column", [("first", "first_ts"), ("last", "last_ts"),
                                         ("events", "events"), ("id", "external_id")])
def test_sorts_are_ordered_both_ways(ws, sort, column):
    up = [getattr(r, column) for r in users_page(ws, sort=sort, descending=False,
                                                 limit=200).rows]
    down = [getattr(r, column) for r in users_page(ws, sort=sort, descending=True,
                                                   limit=200).rows]
    assert up == sorted(up) and down == sorted(down, reverse=True)


def test_search_by_country_and_id(ws):
    germany = users_page(ws, search="germ", limit=200)
    count = ws.conn.execute("SELECT count(*) FROM users WHERE json_extract(attributes, "
                            "'$.country') = 'Germany'").fetchone()[0]
    assert germany.total == len(germany.rows) == count > 0
    assert {r.attribute for r in germany.rows} == {"Germany"}
    one = users_page(ws, search=TOP_USER)
    assert [r.external_id for r in one.rows] == [TOP_USER]
    assert users_page(ws, search="%").total == 0  # a wildcard is searched for literally
    assert users_page(ws, search="  ").total == 200
    assert search_user_ids(ws, "germ") == sorted(r.external_id for r in germany.rows)


def test_unknown_sort(ws):
    with pytest.raises(BrowseError, match="unknown sort"):
        users_page(ws, sort="bogus")


def test_statistics_follow_new_profiles(demo_workspace):
    with Workspace.open(demo_workspace) as ws:
        assert users_page(ws, search=TOP_USER).rows[0].segment is None
        add_profiles(demo_workspace)  # another connection writes
        row = users_page(ws, search=TOP_USER).rows[0]
        assert row.segment == "Irish wholesale gift buyer"  # the latest ok snapshot
        assert users_page(ws, search="wholesale gift").total == 1


def test_user_detail_without_a_run(ws):
    user = find_user(ws, TOP_USER)
    detail = user_detail(ws, user)
    events, baskets = ws.conn.execute(
        "SELECT count(*), count(DISTINCT basket) FROM interactions WHERE user_id = ?",
        (user,)).fetchone()
    assert (detail.external_id, detail.events, detail.baskets) == (TOP_USER, events, baskets)
    assert len(detail.timeline) == min(events, 2000)
    assert [e.ts for e in detail.timeline] == sorted((e.ts for e in detail.timeline),
                                                     reverse=True)
    assert detail.timeline[0].ts == detail.last_ts
    assert detail.run is None and detail.recommendations == [] and detail.profiles == []
    assert len(user_detail(ws, user, timeline_limit=5).timeline) == 5
    with pytest.raises(BrowseError):
        user_detail(ws, 10**9)
    assert find_user(ws, "no-such-customer") is None


def test_user_detail_with_a_run_and_profiles(ui_workspace):
    with Workspace.open(ui_workspace) as ws:
        user = find_user(ws, TOP_USER)
        detail = user_detail(ws, user, k=10)
        assert detail.run is not None and detail.run.id == 1 and detail.run.active
        assert [r.rank for r in detail.recommendations] == list(range(1, 11))
        bought = {key for (key,) in ws.conn.execute(
            "SELECT DISTINCT i.external_id FROM interactions x JOIN items i ON i.id = x.item_id "
            "WHERE x.user_id = ?", (user,))}
        assert all(r.bought_before == (r.item_key in bought) for r in detail.recommendations)
        assert {r.bought_before for r in detail.recommendations} == {True, False}
        assert all(r.title for r in detail.recommendations)
        assert len(detail.facet_weights) == detail.baskets == len(detail.memory)
        assert all(abs(sum(w.as_dict().values()) - 1) < 1e-3 for w in detail.facet_weights)
        assert {w.facets for w in detail.facet_weights} == {FACETS}  # in the stored order
        stored = ws.conn.execute(
            "SELECT ts, facet, weight FROM facet_weights WHERE run_id = 1 AND user_id = ? "
            "ORDER BY ts, rowid", (user,)).fetchall()
        assert [(w.ts, f, x) for w in detail.facet_weights for f, x in w.weights.items()] == stored
        assert [p.status for p in detail.profiles] == ["ok", "failed", "ok"]
        assert detail.profiles[-1].interests[0] == "christmas decorations"
        other = find_user(ws, users_page(ws, sort="events", descending=False).rows[0]
                          .external_id)
        assert user_detail(ws, other).recommendations == []  # not in the run's output


def test_runs_and_the_active_run(ui_workspace):
    add_run(ui_workspace, run_id=2, active=False)
    add_unfinished_run(ui_workspace, 3, "failed", "NaN loss")
    with Workspace.open(ui_workspace) as ws:
        runs = list_runs(ws)
        assert [r.id for r in runs] == [3, 2, 1]
        assert active_run(ws).id == 1
        assert runs[1].headline == {"recall@10": 0.1234, "ndcg@10": 0.0712, "mrr": 0.0551}
        assert runs[1].report[1]["method"] == "popularity"
        set_active_run(ws, 2)
        assert [r.id for r in list_runs(ws) if r.active] == [2]
        assert active_run(ws).id == 2
        with pytest.raises(BrowseError, match="not finished"):
            set_active_run(ws, 3)
        with pytest.raises(BrowseError, match="no run 9"):
            set_active_run(ws, 9)
        assert active_run(ws).id == 2


def test_pipeline_status(ui_workspace, demo_workspace_file):
    with Workspace.open(demo_workspace_file) as ws:
        empty = pipeline_status(ws)
    assert (empty.profiles_ok, empty.users_without_profile, empty.runs) == (0, 200, [])
    with Workspace.open(ui_workspace) as ws:
        status = pipeline_status(ws)
    assert (status.profiles_ok, status.profiles_failed, status.users_profiled) == (2, 1, 1)
    assert status.users_without_profile == 199 and status.active_run_id == 1
    assert status.runs_done == 1


def test_headline_metrics_flat_or_per_protocol():
    assert headline_metrics({"recall@10": 0.5, "mrr": 0.1, "n_events": 3}) == {
        "recall@10": 0.5, "mrr": 0.1}
    assert headline_metrics({"full": {"ndcg@10": 0.2}, "paper": {"ndcg@10": 0.9}}) == {
        "ndcg@10": 0.2}
    assert headline_metrics(json.loads("[]")) == {}


def test_long_facet_rows_fold_into_one_dict_per_event():
    """An event ends where the user or time changes, or where a facet comes again (two events
    at the same second stay two); any subset of facets and any names fold as stored."""
    rows = [(7, 100, "interests", 1.0), (7, 100, "interests", 1.0), (7, 160, "interests", 1.0),
            (8, 160, "brands", 0.25), (8, 160, "novelty", 0.75)]
    assert group_facet_rows(rows) == [
        (7, 100, {"interests": 1.0}), (7, 100, {"interests": 1.0}),
        (7, 160, {"interests": 1.0}), (8, 160, {"brands": 0.25, "novelty": 0.75})]
    assert group_facet_rows([]) == []
