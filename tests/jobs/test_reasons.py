"""Why each recommended item: the reason parts on a small log with known answers, and the three
lists with reasons that a real training stores (the demo slice, no profiles, no item text)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from dynllm_tui.jobs.reasons import (
    latest_profile_facets,
    most_similar_bought,
    purchase_history,
    recommendation_reasons,
    top_facet_at_latest_event,
)
from models.data.events import DAY, EventLog
from models.training.replay import FacetWeights

T0 = 1_300_000_000.0


def _log() -> EventLog:
    """User 0 buys item 0 in three baskets (twice in the first), item 1 once; user 1 buys
    item 2 once. Five items; 3 and 4 never bought."""
    users = [0, 0, 0, 0, 0, 1]
    items = [0, 0, 1, 0, 0, 2]
    ts = [T0, T0, T0 + DAY, T0 + 5 * DAY, T0 + 8 * DAY, T0 + 10 * DAY]
    group = [0, 0, 1, 2, 3, 4]
    return EventLog.from_arrays(np.array(users), np.array(items), np.array(ts), 2, 5,
                                np.array(group))


def test_purchase_history_counts_baskets_and_the_last_time():
    counts, last = purchase_history(_log(), np.array([0, 0, 0, 1, 1]), np.array([0, 1, 3, 2, 0]))
    assert counts.tolist() == [3, 1, 0, 1, 0]  # item 0 twice in one basket is one purchase
    assert last[:2].tolist() == [T0 + 8 * DAY, T0 + DAY] and np.isnan(last[2])


def test_most_similar_bought_item_by_cosine_never_itself():
    text = np.array([[1, 0, 0], [0, 0.3, 0.95], [0, 1, 0], [0.8, 0.6, 0], [0, 0.2, 1.0]],
                    np.float32) * np.array([[3], [1], [2], [1], [5]], np.float32)  # norms vary
    like = most_similar_bought(_log(), np.array([0, 0, 0, 0, 1, 1]),
                               np.array([3, 0, 1, 4, 4, 2]), text, block=1)
    # User 0 bought items 0 and 1 (orthogonal: neither is "like" the other); user 1 only item 2
    # (so nothing is like item 2 but itself, which never counts).
    assert like.tolist() == [0, -1, -1, 1, 2, -1]


def test_the_reason_line_has_each_part_its_evidence_allows():
    log = _log()
    text = np.eye(5, dtype=np.float32)
    text[3, 0] = 1.0  # item 3 is like item 0
    weights = FacetWeights(np.array([0, 0, 1]), np.array([T0, T0 + 8 * DAY, T0 + 10 * DAY]),
                           np.array([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]], np.float32),
                           ("crowd_segment", "interests"))
    user_facet = top_facet_at_latest_event(weights)
    assert user_facet == {0: "interests", 1: "crowd_segment"}  # the latest event's top facet
    reasons = recommendation_reasons(
        log, np.array([0, 0, 0, 1]), np.array([0, 1, 3, 4]), end=float(log.ts[-1]),
        titles=["MUG", "JAR", "TIN", "LIKE MUG", "BOX"], item_text=text, user_facet=user_facet,
        facet_texts={0: {"interests": "party goods, kitchenware"}})
    assert reasons == [
        "bought 3 times, last 2 days ago; interests: party goods, kitchenware",  # 1 alone
        "bought once, last 9 days ago; interests: party goods, kitchenware",  # MUG: cos 0
        "new to this customer; interests: party goods, kitchenware; like MUG",
        "new to this customer",  # user 1: no profile text, nothing bought like item 4
    ]
    # Without item text or profiles: the purchase history only.
    assert recommendation_reasons(log, np.array([1]), np.array([2]), end=T0 + 10.5 * DAY,
                                  titles=[]) == ["bought once, last under a day ago"]


def test_latest_ok_profile_texts(demo_workspace):
    from storage.browse import find_user
    from storage.workspace import Workspace
    from tests.ui.conftest import TOP_USER, add_profiles

    add_profiles(demo_workspace)  # ok, failed, ok: the third is the latest ok
    with Workspace.open(demo_workspace) as ws:
        user = find_user(ws, TOP_USER)
        facets = latest_profile_facets(ws, [user, user + 1])
    assert facets == {user: {"crowd_segment": "Irish wholesale gift buyer",
                             "interests": "christmas decorations, party goods, photo frames",
                             "categories": "CHRISTMAS, PARTY, FRAMES"}}


@pytest.fixture(scope="module")
def trained_demo(tmp_path_factory, demo_workspace_file):
    """The demo slice trained one epoch (with the repeat term) and replayed; tests copy it."""
    from dynllm_tui.jobs.training import train_job

    db = tmp_path_factory.mktemp("reasons") / "ws.db"
    shutil.copy(demo_workspace_file, db)
    return db, train_job(db, epochs=1, device="cpu", patience=1, repeat_term=True).run_id


@pytest.mark.slow
def test_a_real_training_stores_three_lists_with_reasons(trained_demo):
    from dynllm_tui.jobs.training import REPLAY_K
    from storage.workspace import Workspace

    db, run = trained_demo
    with Workspace.open(db, create=False) as ws:
        users = ws.conn.execute("SELECT count(*) FROM users").fetchone()[0]
        per_list = dict(ws.conn.execute(
            "SELECT list, count(DISTINCT user_id) FROM recommendations WHERE run_id = ? "
            "GROUP BY list", (run,)).fetchall())
        assert per_list == {"all": users, "buy-again": users, "discover": users}
        # Buy-again: exactly the items bought before, as many as the user has (up to K).
        wrong = ws.conn.execute(
            "SELECT list, count(*) FROM recommendations r WHERE run_id = ? AND ("
            "bought_before != EXISTS (SELECT 1 FROM interactions x "
            "WHERE x.user_id = r.user_id AND x.item_id = r.item_id) "
            "OR (list != 'all' AND bought_before != (list = 'buy-again'))) GROUP BY list",
            (run,)).fetchall()
        assert wrong == []
        short = ws.conn.execute(
            "SELECT r.user_id, count(*), (SELECT count(DISTINCT item_id) FROM interactions x "
            "WHERE x.user_id = r.user_id) FROM recommendations r WHERE run_id = ? "
            "AND list = 'buy-again' GROUP BY r.user_id", (run,)).fetchall()
        assert all(n == min(bought, REPLAY_K) for _u, n, bought in short)
        assert any(bought < REPLAY_K for _u, _n, bought in short)  # shorter lists exist
        # The "all" list is the better of the two lists, merged by score.
        for user, in ws.conn.execute("SELECT id FROM users ORDER BY id LIMIT 20"):
            ranked = {name: ws.conn.execute(
                "SELECT item_id, score FROM recommendations WHERE run_id = ? AND list = ? "
                "AND user_id = ? ORDER BY rank", (run, name, user)).fetchall()
                for name in ("all", "buy-again", "discover")}
            merged = sorted(ranked["buy-again"] + ranked["discover"], key=lambda r: -r[1])
            assert [i for i, _ in ranked["all"]] == [i for i, _ in merged[:REPLAY_K]]
        reasons = ws.conn.execute(
            "SELECT list, bought_before, reason FROM recommendations WHERE run_id = ?",
            (run,)).fetchall()
    assert all(reason for _l, _b, reason in reasons)
    assert all(r.startswith("bought ") == bool(b) for _l, b, r in reasons)
    assert all(r == "new to this customer" for _l, b, r in reasons if not b)  # no text, profile


@pytest.mark.slow
def test_a_run_stored_before_the_lists_gets_them_by_replay(tmp_path, trained_demo):
    """A run whose lists and reasons are gone (as one stored before them) says so; replaying
    its checkpoint stores the same three lists with the same reasons again."""
    from dynllm_tui.jobs.replay import replay_job
    from storage.browse import run_has_lists
    from storage.errors import DynllmError
    from storage.workspace import Workspace

    db = tmp_path / "ws.db"
    shutil.copy(trained_demo[0], db)
    # The checkpoints folder sits beside the workspace: the copy's replay reads the original's.
    run = trained_demo[1]
    query = ("SELECT list, user_id, rank, item_id, round(score, 4), bought_before, reason "
             "FROM recommendations WHERE run_id = ? ORDER BY list, user_id, rank")
    with Workspace.open(db, create=False) as ws:
        stored = ws.conn.execute(query, (run,)).fetchall()
        with ws.transaction() as conn:  # what the v5 migration leaves of an older run
            conn.execute("DELETE FROM recommendations WHERE list != 'all'")
            conn.execute("UPDATE recommendations SET reason = NULL")
        assert not run_has_lists(ws, run)
    assert replay_job(db, run) == (run, len(stored))
    with Workspace.open(db, create=False) as ws:
        assert run_has_lists(ws, run)
        assert ws.conn.execute(query, (run,)).fetchall() == stored
    with pytest.raises(DynllmError, match=r"^no run 99 in "):
        replay_job(db, 99)
