"""Segments on a real workspace (the demo slice with a run, its buy-again and discover lists, and
profiles for seven customers): counts, shares, repeat share and facet means checked by hand
against the raw rows; the detail's most recommended items; bad input (unknown name, a segment
of one, no profiles, a run from before the lists); the CLI and the segment export."""

from __future__ import annotations

import csv
import shutil
from collections import Counter, defaultdict

import pytest

from dynllm_tui.cli import main
from dynllm_tui.jobs.segments import NO_PROFILES, export_segment, segment_info, segments_table
from storage.browse import BrowseError, segment_detail, segments_page
from storage.exports import ExportError
from storage.workspace import Workspace
from tests.ui.conftest import add_run
from tests.ui.recommendation_lists import add_lists
from tests.ui.segments_workspace import GIFT, PARTY, SOLO, add_segment_profiles, ranked_users


@pytest.fixture(scope="module")
def segments_file(tmp_path_factory, demo_workspace_file):
    db = tmp_path_factory.mktemp("segments") / "ws.db"
    shutil.copy(demo_workspace_file, db)
    add_run(db)  # run 1: the five most active customers, all four facets weighted
    add_lists(db)
    add_run(db, 2, active=False)  # run 2: stored before the lists (the "all" list only)
    add_segment_profiles(db)
    return db


def _by_hand(conn, members: list[int]) -> tuple[int, int, int]:
    """(purchase lines, purchases: one item in one basket, re-buys: purchases of an item the
    user bought in an earlier basket) of `members` from the raw interactions."""
    events = purchases = repeats = 0
    for user in members:
        rows = conn.execute("SELECT item_id, ts FROM interactions WHERE user_id = ?",
                            (user,)).fetchall()
        first: dict[int, int] = {}
        for item, ts in rows:
            first[item] = min(ts, first.get(item, ts))
        events += len(rows)
        purchases += len(set(rows))
        repeats += sum(ts > first[item] for item, ts in set(rows))
    return events, purchases, repeats


def test_segments_page_counts_checked_by_hand(segments_file):
    with Workspace.open(segments_file, readonly=True) as ws:
        users = ranked_users(ws.conn)
        page = segments_page(ws)
        assert [(r.segment, r.users) for r in page.rows] == [(GIFT, 3), (PARTY, 3), (SOLO, 1)]
        assert page.users == 200 and page.unsegmented == 193 and page.total == 3
        assert page.run_id == 1
        assert page.facets == ["crowd_segment", "interests", "categories", "brands"]
        gift = page.rows[0]
        members = users[:3]
        events, purchases, repeats = _by_hand(ws.conn, members)
        assert gift.events == events and gift.repeat_share == pytest.approx(repeats / purchases)
        assert 0 < gift.repeat_share < 1
        assert gift.share == pytest.approx(3 / 200)
        # Facet means at each member's latest weighted event, from the raw rows.
        sums: dict[str, list[float]] = defaultdict(list)
        for user in members:
            latest = ws.conn.execute("SELECT max(ts) FROM facet_weights WHERE run_id = 1 "
                                     "AND user_id = ?", (user,)).fetchone()[0]
            for facet, weight in ws.conn.execute(
                    "SELECT facet, weight FROM facet_weights WHERE run_id = 1 AND user_id = ? "
                    "AND ts = ?", (user, latest)):
                sums[facet].append(weight)
        assert gift.facet_weights == pytest.approx(
            {f: sum(v) / len(v) for f, v in sums.items()})
        # Party planner: two of its three users have weights; Solo buyer's user has none at all:
        # "not available" (None), never 0.
        assert all(v is not None for v in page.rows[1].facet_weights.values())
        assert page.rows[2].facet_weights == dict.fromkeys(page.facets)
        # Paging and search.
        assert [r.segment for r in segments_page(ws, offset=1, limit=1).rows] == [PARTY]
        found = segments_page(ws, search="party")
        assert [r.segment for r in found.rows] == [PARTY] and found.total == 1


def test_segment_detail_most_recommended_items_by_hand(segments_file):
    with Workspace.open(segments_file, readonly=True) as ws:
        users = ranked_users(ws.conn)
        detail = segment_detail(ws, GIFT, top=5)
        assert detail.row.users == 3 and detail.note is None and detail.run_id == 1
        assert set(detail.items) == {"buy-again", "discover"}
        assert detail.users_with_recommendations == 3
        for name, items in detail.items.items():
            counts: Counter[str] = Counter()
            ranks: dict[str, list[int]] = defaultdict(list)
            for user in users[:3]:
                for key, rank in ws.conn.execute(
                        "SELECT i.external_id, r.rank FROM recommendations r JOIN items i "
                        "ON i.id = r.item_id WHERE r.run_id = 1 AND r.list = ? "
                        "AND r.user_id = ? AND r.rank <= 10", (name, user)):
                    counts[key] += 1
                    ranks[key].append(rank)
            expected = sorted(counts, key=lambda k: (-counts[k], sum(ranks[k]) / len(ranks[k]),
                                                     k))[:5]
            assert [i.item_key for i in items] == expected, name
            assert [i.users for i in items] == [counts[k] for k in expected]
        # The demo's second customer has no discover list: at most two users behind an item.
        assert max(i.users for i in detail.items["discover"]) <= 2


def test_bad_input_unknown_segment_one_user_old_run_no_profiles(segments_file,
                                                                  demo_workspace):
    with Workspace.open(segments_file, readonly=True) as ws:
        with pytest.raises(BrowseError, match=r"no segment named 'Party planners' .*"
                                              r"did you mean 'Party planner'"):
            segment_detail(ws, "Party planners")
        solo = segment_detail(ws, SOLO)
        assert solo.row.users == 1 and solo.users_with_recommendations == 0
        assert solo.facets == ["crowd_segment", "interests", "categories", "brands"]
        assert solo.row.facet_weights == dict.fromkeys(solo.facets)  # n/a, never 0
        assert solo.items == {"buy-again": [], "discover": []}
        old = segment_detail(ws, GIFT, run_id=2)
        assert "run #2 was stored before buy-again/discover lists" in old.note
        assert list(old.items) == ["all"] and old.items["all"]
    page = segments_table(demo_workspace)
    assert page.rows == [] and page.unsegmented == page.users == 200
    assert main(["--db", str(demo_workspace), "segments"]) == 0


def test_cli_segments_table_detail_and_errors(segments_file, capsys):
    assert main(["--db", str(segments_file), "segments", "--limit", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["segment", "users", "share", "repeat"]
    assert out[1].startswith(GIFT) and out[2].startswith(PARTY) and len(out) == 4
    assert "2 of 3 segments · 193 of 200 customers have no profile" in out[3]
    assert main(["--db", str(segments_file), "segments", SOLO]) == 0
    text = capsys.readouterr().out
    assert "segment 'Solo buyer': 1 customer (0.5% of 200)" in text
    assert "one customer only" in text and "brands n/a" in text
    assert main(["--db", str(segments_file), "segments", "Nobody"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no segment named 'Nobody'")
    assert main(["--db", str(segments_file), "segments", "--limit", "0"]) == 2


def test_cli_segments_without_profiles_says_how_to_make_them(demo_workspace, capsys):
    assert main(["--db", str(demo_workspace), "segments"]) == 0
    assert capsys.readouterr().out.strip() == NO_PROFILES
    with pytest.raises(BrowseError, match="no segment named 'Any'"):
        segment_info(demo_workspace, "Any")


def test_export_a_segments_recommendations(segments_file, tmp_path, capsys):
    out = tmp_path / "gift.csv"
    written = export_segment(segments_file, GIFT, out, list_name="discover")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert written == len(rows) > 0
    with Workspace.open(segments_file, readonly=True) as ws:
        members = {e for (e,) in ws.conn.execute(
            "SELECT external_id FROM user_stats WHERE segment = ?", (GIFT,))}
        expected = ws.conn.execute(
            "SELECT count(*) FROM recommendations r JOIN user_stats s ON s.user_id = r.user_id "
            "WHERE r.run_id = 1 AND r.list = 'discover' AND r.rank <= 10 AND s.segment = ?",
            (GIFT,)).fetchone()[0]
    assert {r["user_id"] for r in rows} <= members and written == expected
    cli_out = tmp_path / "cli.csv"
    assert main(["--db", str(segments_file), "export", "recommendations", str(cli_out),
                 "--segment", GIFT, "--list", "discover"]) == 0
    assert [r[:5] for r in csv.reader(cli_out.open())] == \
        [r[:5] for r in csv.reader(out.open())]
    with pytest.raises(ExportError, match="no segment named 'Gift'"):
        export_segment(segments_file, "Gift", tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()
    assert main(["--db", str(segments_file), "export", "facets", str(tmp_path / "f.csv"),
                 "--segment", GIFT]) == 2
    assert "not of facets" in capsys.readouterr().err
