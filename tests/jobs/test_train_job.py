"""Training end to end on the real demo slice: train 2 epochs, evaluate, replay, recommend,
export; and the bad inputs of the Model issue."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from dynllm_tui.cli import EXIT_ERROR, main
from dynllm_tui.jobs.evaluation import evaluate_job
from dynllm_tui.jobs.recommend import recommend
from dynllm_tui.jobs.training import train_job
from storage.errors import DynllmError
from storage.workspace import Workspace
from tests.reference_replay import check_workspace_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_workspace_file):
    db = tmp_path_factory.mktemp("train") / "ws.db"
    shutil.copy(demo_workspace_file, db)
    summary = train_job(db, epochs=2, device="cpu", patience=5)
    return db, summary


def test_train_records_the_run_and_replays(trained):
    db, summary = trained
    assert summary.status == "done" and summary.epochs == 2 and summary.best_epoch in (1, 2)
    assert summary.test["full"]["n_events"] > 1000
    # The test metrics are the best model's, recomputed on an independent path.
    reference = check_workspace_run(db, summary.checkpoint, summary.test, summary.with_profiles)
    assert reference["full"]["recall@10"] > 0
    with Workspace.open(db, create=False) as ws:
        run = ws.conn.execute(
            "SELECT status, active, config, history, test_metrics, checkpoint_path, "
            "data_fingerprint FROM runs WHERE id = ?", (summary.run_id,)).fetchone()
        users = ws.conn.execute("SELECT count(*) FROM users").fetchone()[0]
        recs = ws.conn.execute(
            "SELECT count(DISTINCT user_id), max(rank) FROM recommendations WHERE run_id = ?",
            (summary.run_id,)).fetchone()
        trace = ws.conn.execute("SELECT count(*), min(drift), max(drift) FROM memory_trace "
                                "WHERE run_id = ?", (summary.run_id,)).fetchone()
    status, active, config, history, test, checkpoint, fingerprint = run
    assert status == "done" and active == 1 and len(fingerprint) > 8
    assert json.loads(config)["train"]["epochs"] == 2
    assert [e["epoch"] for e in json.loads(history)] == [1, 2]
    assert json.loads(test)["full"]["recall@10"] == summary.test["full"]["recall@10"]
    assert checkpoint.endswith("best.pt")
    assert recs == (users, 50)  # top-50 for every user
    assert trace[0] > 0 and 0 <= trace[1] <= trace[2] <= 2


def test_recommend_and_export(trained, tmp_path, capsys):
    db, summary = trained
    with Workspace.open(db, create=False) as ws:
        user = ws.conn.execute("SELECT external_id FROM users ORDER BY id").fetchone()[0]
    out = recommend(db, user, k=5)
    assert out["run_id"] == summary.run_id and [i["rank"] for i in out["items"]] == [1, 2, 3, 4, 5]
    scores = [i["score"] for i in out["items"]]
    assert scores == sorted(scores, reverse=True) and all(i["title"] for i in out["items"])
    assert main(["--db", str(db), "recommend", user, "--k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["items"]) == 3
    # The two lists: buy-again holds only items the user bought before, discover none of them,
    # each ranked by the same scores, each with a reason.
    with Workspace.open(db, create=False) as ws:
        bought = {key for (key,) in ws.conn.execute(
            "SELECT DISTINCT i.external_id FROM interactions x JOIN items i ON i.id = x.item_id "
            "JOIN users u ON u.id = x.user_id WHERE u.external_id = ?", (user,))}
    for name, expect_bought in (("buy-again", True), ("discover", False)):
        assert main(["--db", str(db), "recommend", user, "--k", "10", "--list", name,
                     "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert listed["list"] == name and listed["items"]
        assert all((i["item_id"] in bought) == expect_bought for i in listed["items"])
        assert all(i["bought_before"] == expect_bought and i["reason"] for i in listed["items"])
        assert [i["rank"] for i in listed["items"]] == list(range(1, len(listed["items"]) + 1))
    assert main(["--db", str(db), "recommend", user, "--list", "nonsense"]) == EXIT_ERROR
    assert "unknown recommendation list 'nonsense'" in capsys.readouterr().err
    assert main(["--db", str(db), "export", "recommendations", str(tmp_path / "r.csv"),
                 "--k", "2"]) == 0
    with open(tmp_path / "r.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["user_id", "rank", "item_id"] and len(rows) == 1 + 2 * 200


def test_evaluate_reports_baselines_beside_the_run(trained):
    db, summary = trained
    rows = evaluate_job(db)
    methods = {r["method"] for r in rows}
    assert {"popularity (30d)", "BPR-MF"} <= methods
    assert any(m.startswith("DynLLM") for m in methods)
    assert {r["protocol"] for r in rows} == {"full", "paper", "exclude_seen"}
    full = [r for r in rows if r["protocol"] == "full"]
    assert len({r["n_events"] for r in full}) == 1  # same split, same events for every row
    with Workspace.open(db, create=False) as ws:
        stored = ws.conn.execute("SELECT report FROM runs WHERE id = ?",
                                 (summary.run_id,)).fetchone()[0]
    assert json.loads(stored) == json.loads(json.dumps(rows, default=float))


def test_bad_inputs(tmp_path, trained, demo_workspace, capsys):
    db, _ = trained
    with pytest.raises(DynllmError, match="unknown user id 'nobody'"):
        recommend(db, "nobody")
    assert main(["--db", str(db), "replay", "--run", "99"]) == EXIT_ERROR
    assert "no run 99 in" in capsys.readouterr().err
    Workspace.open(tmp_path / "empty.db").close()
    with pytest.raises(DynllmError, match="no interactions"):
        train_job(tmp_path / "empty.db", epochs=1)
    with Workspace.open(demo_workspace, create=False) as ws:
        user = ws.conn.execute("SELECT external_id FROM users ORDER BY id").fetchone()[0]
    assert main(["--db", str(demo_workspace), "recommend", user]) == EXIT_ERROR
    assert "no finished run yet" in capsys.readouterr().err
    # A checkpoint that is missing or corrupt: resuming says so and names the run.
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    with pytest.raises(DynllmError, match="run 1"):
        train_job(copy, epochs=1, resume=1)  # copy.checkpoints/ does not exist
    # Data changed since the run: evaluating it is refused.
    with Workspace.open(copy) as ws, ws.transaction() as conn:
        conn.execute("DELETE FROM interactions WHERE id IN "
                     "(SELECT id FROM interactions ORDER BY ts DESC LIMIT 10)")
    with pytest.raises(DynllmError, match="interactions changed"):
        evaluate_job(copy)
