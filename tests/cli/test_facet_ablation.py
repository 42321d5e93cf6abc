"""`train --ablation facet:NAME` on a workspace with real profiles, end to end through the
console entry point (issue 10, defect 2: it crashed in the replay after recording the run as
done). A real slice, real LLM profiles, one epoch keeping only the interests facet; then
`recommend` and both exports must work on what the run stored."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from storage.exports import FACET_KEY_COLUMNS, RECOMMENDATION_COLUMNS
from storage.workspace import Workspace
from tests.cli.ablation_workspace import (
    ABLATION,
    EVENTS_AFTER_A_PROFILE,
    SLICE_ROWS,
    WEIGHTS_WITHOUT_A_PROFILE,
    ablation_workspace,
    cli,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory, online_retail_path):
    return ablation_workspace(tmp_path_factory, online_retail_path)


@pytest.fixture
def db(built, tmp_path):
    copy = tmp_path / "ws.db"
    shutil.copy(built.db, copy)
    return copy


def _csv(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_the_run_trains_with_profiles_and_stores_only_the_kept_facet(built):
    assert built.imported["rows_read"] == SLICE_ROWS and built.imported["rows_kept"] > 5_000
    profiled = built.profiled
    assert profiled["planned"] >= 6 and profiled["made"] + profiled["failed"] == profiled["planned"]
    assert profiled["made"] >= 1
    trained = built.trained
    assert trained["status"] == "done" and trained["with_profiles"] is True
    run = trained["run_id"]
    with Workspace.open(built.db, create=False) as ws:
        status, config = ws.conn.execute("SELECT status, config FROM runs WHERE id = ?",
                                         (run,)).fetchone()
        config = json.loads(config)
        facets = ws.conn.execute(
            "SELECT facet, count(*), min(weight), max(weight) FROM facet_weights "
            "WHERE run_id = ? GROUP BY facet", (run,)).fetchall()
        events = ws.conn.execute(EVENTS_AFTER_A_PROFILE).fetchone()[0]
        unprofiled = ws.conn.execute(WEIGHTS_WITHOUT_A_PROFILE, (run,)).fetchone()[0]
        recommended = ws.conn.execute(
            "SELECT count(DISTINCT user_id), count(*) FROM recommendations "
            "WHERE run_id = ? AND list = 'all'",
            (run,)).fetchone()
        users = ws.conn.execute("SELECT count(*) FROM users").fetchone()[0]
    assert status == "done" and config["with_profiles"] is True
    assert config["model"]["facets"] == ["interests"] and ABLATION in config["model_name"]
    # One weight per event of a user with a snapshot before the event's batch (at most every
    # event after a snapshot, none before one), and a softmax over one facet is 1.
    assert len(facets) == 1 and unprofiled == 0
    name, count, low, high = facets[0]
    assert name == "interests" and 0 < count <= events and low == high == 1.0
    assert recommended == (users, 50 * users)


def test_recommend_returns_items_of_the_ablation_run(built, db):
    with Workspace.open(db, create=False) as ws:
        user = ws.conn.execute(
            "SELECT u.external_id FROM profiles p JOIN users u ON u.id = p.user_id "
            "WHERE p.status = 'ok' ORDER BY u.external_id LIMIT 1").fetchone()[0]
        items = {key for (key,) in ws.conn.execute("SELECT external_id FROM items")}
    out = json.loads(cli(db, "recommend", user, "--k", "10", "--json"))
    assert out["run_id"] == built.trained["run_id"] and out["user_id"] == user
    ranked = out["items"]
    assert [r["rank"] for r in ranked] == list(range(1, 11))
    assert {r["item_id"] for r in ranked} <= items and all(r["title"] for r in ranked)


def test_both_exports_of_the_ablation_run(built, db, tmp_path):
    recs, facets = tmp_path / "recs.csv", tmp_path / "facets.csv"
    assert cli(db, "export", "recommendations", str(recs), "--k", "5").startswith("wrote ")
    assert cli(db, "export", "facets", str(facets)).startswith("wrote ")
    with Workspace.open(db, create=False) as ws:
        users = ws.conn.execute("SELECT count(*) FROM users").fetchone()[0]
        stored = ws.conn.execute("SELECT count(*) FROM facet_weights WHERE run_id = ?",
                                 (built.trained["run_id"],)).fetchone()[0]
    rec_rows = _csv(recs)
    assert tuple(rec_rows[0]) == RECOMMENDATION_COLUMNS and len(rec_rows) - 1 == 5 * users
    facet_rows = _csv(facets)
    # The run has one facet: one weight column, none for the facets it was trained without.
    assert facet_rows[0] == [*FACET_KEY_COLUMNS, "interests"]
    assert len(facet_rows) - 1 == stored
    assert {r[2] for r in facet_rows[1:]} == {"1.000000"}
