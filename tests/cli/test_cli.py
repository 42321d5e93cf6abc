"""The `dynllm-tui` command: import, status, errors as one line with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dynllm_tui.cli import EXIT_ERROR, main
from models.vocabulary import FACETS
from storage.workspace import Workspace
from tests.cli.ablation_workspace import EVENTS_AFTER_A_PROFILE, WEIGHTS_WITHOUT_A_PROFILE
from tests.conftest import DEMO_SLICE, REPO

CLI = [sys.executable, "-m", "dynllm_tui.cli"]


def test_import_then_status_json(tmp_path, capsys):
    db = tmp_path / "ws.db"
    assert main(["--db", str(db), "import", str(DEMO_SLICE), "--preset", "online-retail",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_read"] == 29_790
    assert summary["rows_kept"] + sum(summary["rows_rejected"].values()) == 29_790
    assert summary["time_min"] == "2011-09-01T09:39:00Z"

    assert main(["--db", str(db), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    for key in ("users", "items", "interactions", "profiles", "runs", "imports"):
        assert key in status
    assert status["users"] == 200 and status["interactions"] == summary["rows_kept"]
    assert status["profiles"] == 0 and status["runs"] == 0
    (imp,) = status["imports"]
    assert imp["file"] == str(DEMO_SLICE) and imp["preset"] == "online-retail"
    assert len(imp["sha256"]) == 64
    assert imp["rows_read"] == 29_790 and imp["rows_kept"] == summary["rows_kept"]
    assert imp["rows_rejected"] == summary["rows_rejected"]


def test_reimport_says_nothing_was_added(tmp_path, capsys):
    db = tmp_path / "ws.db"
    args = ["--db", str(db), "import", str(DEMO_SLICE), "--preset", "online-retail"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Already imported as import #1" in out and "nothing added" in out


def test_human_summary_table(tmp_path, capsys):
    assert main(["--db", str(tmp_path / "ws.db"), "import", str(DEMO_SLICE),
                 "--preset", "online-retail"]) == 0
    out = capsys.readouterr().out
    for label in ("rows read", "rows kept", "rows rejected", "cancellation", "missing_user",
                  "users (added / total)", "items (added / total)", "time span"):
        assert label in out
    assert "29,790" in out


def test_errors_are_one_line_without_traceback(tmp_path):
    """Run the real console entry point as a process: exit 2, one line on stderr."""
    env = {**os.environ, "DYNLLM_DB": str(tmp_path / "env.db")}
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    cases = [
        (["import", str(tmp_path / "missing.csv")], "missing.csv: no such file"),
        (["import", str(bad), "--map", "user=a", "--map", "item=b", "--map", "time=c"],
         "no column 'c'"),
        (["--db", str(bad), "status"], "not an SQLite database"),
    ]
    for args, expected in cases:
        proc = subprocess.run([*CLI, *args], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == EXIT_ERROR, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
        assert "Traceback" not in proc.stderr
    # DYNLLM_DB chose the workspace: created by the first command, nothing imported into it.
    assert Path(tmp_path / "env.db").exists()


def test_db_option_and_env_select_the_workspace(tmp_path, monkeypatch, capsys):
    # Only import and demo create a workspace (issue 10): status on a new path names the one
    # it was pointed at and creates nothing; once created, status reads that one.
    monkeypatch.setenv("DYNLLM_DB", str(tmp_path / "env.db"))
    assert main(["status", "--json"]) == EXIT_ERROR
    assert f"no workspace at {tmp_path / 'env.db'}" in capsys.readouterr().err
    assert not (tmp_path / "env.db").exists()
    for db in (tmp_path / "env.db", tmp_path / "opt.db"):
        Workspace.open(db).close()
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["workspace"] == str(tmp_path / "env.db")
    assert main(["--db", str(tmp_path / "opt.db"), "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["workspace"] == str(tmp_path / "opt.db")


def test_demo_builds_the_whole_pipeline_without_opening(tmp_path, capsys):
    """Import, real LLM profiles (two customers here, to stay quick), training, replay; a rerun
    resumes and redoes nothing."""
    db = tmp_path / "demo.db"
    args = ["--db", str(db), "demo", "--no-open", "--profile-users", "2", "--epochs", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "run 1: done after 1 epochs" in out
    assert main(["--db", str(db), "status", "--json"]) == 0
    out = capsys.readouterr().out
    status = json.loads(out[out.index("{\n"):])
    assert status["users"] == 200 and status["imports"][0]["rows_read"] == 29_790
    with Workspace.open(db, create=False) as ws:
        profiled = ws.conn.execute("SELECT count(DISTINCT user_id) FROM profiles "
                                   "WHERE status = 'ok'").fetchone()[0]
        run = ws.conn.execute("SELECT status, active FROM runs").fetchall()
        config = json.loads(ws.conn.execute("SELECT config FROM runs").fetchone()[0])
        recommended = ws.conn.execute(
            "SELECT count(DISTINCT user_id) FROM recommendations WHERE run_id = 1").fetchone()[0]
        # Per stored event: which facets, and their sum (a softmax over the four facets).
        weights = ws.conn.execute(
            "SELECT group_concat(facet, ','), sum(weight) FROM "
            "(SELECT user_id, ts, facet, weight FROM facet_weights WHERE run_id = 1 "
            " ORDER BY user_id, ts, rowid) GROUP BY user_id, ts").fetchall()
        profiled_events = ws.conn.execute(EVENTS_AFTER_A_PROFILE).fetchone()[0]
        unprofiled = ws.conn.execute(WEIGHTS_WITHOUT_A_PROFILE, (1,)).fetchone()[0]
    assert profiled == 2 and run == [("done", 1)] and recommended == 200
    # The run really trained on the profiles: the config says so, and the replay stored the
    # attention over the facets at the profiled users' events (a snapshot before the batch, so
    # at most every event after a snapshot) and at no event of a user without a profile yet.
    assert config["with_profiles"] is True and config["model"]["facets"] == list(FACETS)
    assert 0 < len(weights) <= profiled_events and unprofiled == 0
    # Online Retail has no brands: that facet is absent (masked), never weighted.
    assert {names for names, _sum in weights} == {"crowd_segment,interests,categories"}
    assert all(abs(total - 1) < 1e-4 for _names, total in weights)
    assert config["model"]["repeat_term"] and config["model_name"] == "dynllm + repeat"
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "run 1 was already trained" in out and "0 made" in out


def test_export_without_a_run_says_what_to_do(tmp_path, capsys, demo_workspace):
    code = main(["--db", str(demo_workspace), "export", "recommendations",
                 str(tmp_path / "recs.csv")])
    assert code == EXIT_ERROR
    assert "no finished run yet" in capsys.readouterr().err
    assert not (tmp_path / "recs.csv").exists()
