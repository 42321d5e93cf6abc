"""The evaluation job and `evaluate` on a real workspace: every run carries its baselines with
repeat/explore columns; bad input gives one clear line each."""

from __future__ import annotations

import json
import shutil

import pytest

from dynllm_tui.cli import EXIT_ERROR, main
from dynllm_tui.jobs.evaluation import store_run_baselines
from dynllm_tui.jobs.training import train_job
from dynllm_tui.jobs.workspace_data import load_workspace_data
from storage.browse import get_run
from storage.workspace import Workspace


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_workspace_file):
    db = tmp_path_factory.mktemp("evaluate") / "ws.db"
    shutil.copy(demo_workspace_file, db)
    summary = train_job(db, epochs=1, device="cpu", patience=5)
    return db, summary.run_id


def test_store_run_baselines_puts_them_in_the_runs_report(trained):
    from models.training.loop import TrainConfig

    db, run_id = trained
    with Workspace.open(db, create=False) as ws:
        data = load_workspace_data(ws, use_profiles=False)
        config = json.loads(ws.conn.execute("SELECT config FROM runs WHERE id = ?",
                                            (run_id,)).fetchone()[0])
        train_config = TrainConfig(**{k: v for k, v in config["train"].items() if k != "ks"})
        rows = store_run_baselines(ws, run_id, data, train_config)
        run = get_run(ws, run_id)
    methods = {r["method"] for r in rows if r["protocol"] == "full"}
    assert {"GP-TopFreq", "TIFU-KNN", "item-kNN", "BPR-MF"} <= methods
    assert any(m.startswith("DynLLM") for m in methods)
    assert all("repeat:recall@20" in r and "explore:ndcg@20" in r for r in rows)
    assert 0 < rows[0]["repeat_ratio"] < 1 and rows[0]["default_protocol"] == "full"
    assert [r["method"] for r in run.report] == [r["method"] for r in rows]


def test_evaluate_cli_prints_repeat_ratio_and_protocols(trained, capsys):
    from dynllm_tui.jobs.evaluation import select_protocol

    db, run_id = trained
    assert main(["--db", str(db), "evaluate"]) == 0  # every protocol
    out = capsys.readouterr().out
    assert out.startswith("repeat ratio ") and "full ranking is the default" in out
    assert "rep R@20" in out and "exp R@20" in out and "paper protocol" in out
    assert "exclude-seen" in out and "repeat events dropped" in out
    with Workspace.open(db, create=False) as ws:
        rows = get_run(ws, run_id).report
    assert {r["protocol"] for r in select_protocol(rows, "default")} == {"full"}
    assert {r["protocol"] for r in select_protocol(rows, "exclude-seen")} == {"exclude_seen"}


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "0"], "--seeds must be a whole number from 1 to 10, not 0"),
    (["--seeds", "11"], "--seeds must be a whole number from 1 to 10, not 11"),
    (["--protocol", "nope"], "--protocol must be one of all, default, full, paper, "
                             "exclude-seen, both, not 'nope'"),
])
def test_evaluate_bad_input_is_one_clear_line(trained, capsys, args, message):
    db, _ = trained
    assert main(["--db", str(db), "evaluate", *args]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {message}"]
