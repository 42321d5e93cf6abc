"""Retraining keeps the better model: a finished run becomes active only when it beats the
active run's best validation Recall@10 on the same data (or is not comparable with it, or the
analyst says so); `dynllm-tui activate RUN` switches by hand. Real trainings (one epoch) on
the first 8,000 lines of the shipped demo slice; a few cases set the stored validation figure
of the active run by SQL so that the comparison goes one way for certain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dynllm_tui.cli import EXIT_ERROR, main
from dynllm_tui.jobs.activate import decide_activation, describe_activation
from dynllm_tui.jobs.training import train_job
from storage.browse.runs import get_run
from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace
from tests.conftest import DEMO_SLICE, write_head

SLICE_LINES = 8_000
ONE_EPOCH = {"epochs": 1, "device": "cpu", "patience": 1, "batch_size": 1024}


def stored(db: Path) -> dict[int, tuple[str, int, float | None, str]]:
    """run id -> (status, active, best validation Recall@10 read from the raw history,
    data fingerprint): the figures the rule must have used, read without storage.browse."""
    with Workspace.open(db, create=False) as ws:
        rows = ws.conn.execute("SELECT id, status, active, best_epoch, history, "
                               "data_fingerprint FROM runs ORDER BY id").fetchall()
    out = {}
    for rid, status, active, best, history, fingerprint in rows:
        epochs = {e["epoch"]: e for e in json.loads(history or "[]")}
        value = epochs[best]["val"]["recall@10"] if best in epochs else None
        out[rid] = (status, active, value, fingerprint)
    return out


def set_validation(db: Path, run_id: int, value: float) -> None:
    """Overwrite the best epoch's validation Recall@10 of run `run_id` in its history."""
    with Workspace.open(db) as ws, ws.transaction() as conn:
        best, history = conn.execute("SELECT best_epoch, history FROM runs WHERE id = ?",
                                     (run_id,)).fetchone()
        epochs = json.loads(history)
        for epoch in epochs:
            if epoch["epoch"] == best:
                epoch["val"]["recall@10"] = value
        conn.execute("UPDATE runs SET history = ? WHERE id = ?", (json.dumps(epochs), run_id))


@pytest.fixture(scope="module")
def slice_file(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("activation")
    db = workdir / "slice.db"
    csv = workdir / "slice.csv"
    write_head(DEMO_SLICE, csv, SLICE_LINES)
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", csv))
    return db


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, slice_file):
    """Two real runs, the second with a learning rate 10,000 times smaller."""
    db = tmp_path_factory.mktemp("two-runs") / "ws.db"
    shutil.copy(slice_file, db)
    first = train_job(db, lr=1e-2, **ONE_EPOCH)
    second = train_job(db, lr=1e-6, **ONE_EPOCH)
    return db, first, second


@pytest.fixture
def copy_of_two_runs(tmp_path, two_runs) -> Path:
    db = tmp_path / "ws.db"
    shutil.copy(two_runs[0], db)
    return db


def active_ids(db: Path) -> list[int]:
    return [rid for rid, (_, active, _, _) in stored(db).items() if active]


def test_the_first_run_becomes_active_and_the_second_follows_the_rule(two_runs):
    db, first, second = two_runs
    runs = stored(db)
    assert first.activated and first.activation_reason == "no-active-run"
    assert first.compared_with is None and "there was none" in first.activation_note
    # The second run against the stored histories: same data, so the validation figures decide.
    (_, _, val1, fp1), (_, _, val2, fp2) = runs[1], runs[2]
    assert fp1 == fp2 and val1 is not None and val2 is not None
    assert second.compared_with == 1 and second.validation == (val2, val1)
    assert second.activated == (val2 > val1)
    assert active_ids(db) == ([2] if val2 > val1 else [1])
    assert runs[2][0] == "done"  # done either way: only the active flag depends on the rule
    kept = "beats" in second.activation_note if val2 > val1 else "stays active" in \
        second.activation_note
    assert kept and f"{val2:.4f}" in second.activation_note and f"{val1:.4f}" in \
        second.activation_note
    with Workspace.open(db, create=False) as ws:
        assert get_run(ws, 2).best_validation == val2


def test_a_worse_run_stays_inactive_and_the_cli_says_by_how_much(copy_of_two_runs, capsys):
    db = copy_of_two_runs
    with Workspace.open(db) as ws, ws.transaction() as conn:
        conn.execute("UPDATE runs SET active = (id = 1)")
    set_validation(db, 1, 0.9)  # the active run now certainly beats any one-epoch run
    assert main(["--db", str(db), "train", "--epochs", "1", "--device", "cpu", "--patience",
                 "1", "--batch-size", "1024"]) == 0
    out = capsys.readouterr().out.splitlines()
    new_val = stored(db)[3][2]
    assert stored(db)[3][0] == "done" and active_ids(db) == [1]
    gap = 0.9 - new_val
    assert out[-1] == (f"run 3 (val R@10 {new_val:.4f}) is below the active run 1 (0.9000) "
                       f"by {gap:.4f} ({-gap / 0.9:+.1%}): run 1 stays active; "
                       "`dynllm-tui activate 3` or Runs to switch")
    # Switch by hand, then the unfinished and unknown runs are refused with one line.
    assert main(["--db", str(db), "activate", "3"]) == 0
    assert capsys.readouterr().out.strip() == f"run 3 (val R@10 {new_val:.4f}) is now the " \
                                              "active run"
    assert active_ids(db) == [3]
    with Workspace.open(db) as ws, ws.transaction() as conn:
        conn.execute("INSERT INTO runs (id, created_at, status, config) "
                     "VALUES (9, '2026-01-06T00:00:00+00:00', 'running', '{}')")
    assert main(["--db", str(db), "activate", "9"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: run 9 is running, not finished: only a finished run can be the "
                   "active one"]
    assert main(["--db", str(db), "activate", "42"]) == EXIT_ERROR
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: no run 42 in this workspace"]
    assert active_ids(db) == [3]


def test_activate_always_replaces_a_better_run(copy_of_two_runs, capsys):
    db = copy_of_two_runs
    with Workspace.open(db) as ws, ws.transaction() as conn:
        conn.execute("UPDATE runs SET active = (id = 1)")
    set_validation(db, 1, 0.9)
    assert main(["--db", str(db), "train", "--epochs", "1", "--device", "cpu", "--patience",
                 "1", "--batch-size", "1024", "--activate", "always", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["activated"] and summary["activation_reason"] == "always"
    assert summary["compared_with"] == 1 and summary["validation"][1] == 0.9
    assert active_ids(db) == [3]


def test_never_and_other_data_decided_on_the_stored_runs(copy_of_two_runs):
    """The rule's other branches on real stored runs (run 2 plays the new run: the decision
    is made while it is still 'running', so it is set back to that)."""
    db = copy_of_two_runs
    with Workspace.open(db) as ws:
        with ws.transaction() as conn:
            conn.execute("UPDATE runs SET status = 'running', active = 0 WHERE id = 2")
            conn.execute("UPDATE runs SET active = 1 WHERE id = 1")
        set_validation(db, 1, 0.9)
        never = decide_activation(ws, 2, "never")
        assert (never.activate, never.reason, never.compared_with) == (False, "never", 1)
        assert not decide_activation(ws, 2, "if-better").activate  # below 0.9, same data
        with ws.transaction() as conn:  # run 1 now looks trained on other data
            conn.execute("UPDATE runs SET data_fingerprint = 'other' WHERE id = 1")
        other = decide_activation(ws, 2, "if-better")
        assert (other.activate, other.reason, other.compared_with) == (True, "other-data", 1)
        line = describe_activation(2, other.activate, other.reason, other.compared_with,
                                   other.validation)
        assert "trained on other data" in line and "not comparable" in line
        set_validation(db, 1, stored(db)[2][2])  # a tie keeps the active run
        with ws.transaction() as conn:
            conn.execute("UPDATE runs SET data_fingerprint = (SELECT data_fingerprint FROM "
                         "runs WHERE id = 2) WHERE id = 1")
        tie = decide_activation(ws, 2, "if-better")
        assert not tie.activate and "ties with" in describe_activation(
            2, tie.activate, tie.reason, tie.compared_with, tie.validation)


def test_a_bad_activate_mode_is_refused_before_anything_is_written(copy_of_two_runs, capsys):
    from storage.errors import DynllmError

    with pytest.raises(DynllmError, match="activate: one of if-better, always, never"):
        train_job(copy_of_two_runs, activate="sometimes", **ONE_EPOCH)
    assert len(stored(copy_of_two_runs)) == 2
    with pytest.raises(SystemExit):
        main(["--db", str(copy_of_two_runs), "train", "--activate", "sometimes"])
    assert "invalid choice: 'sometimes'" in capsys.readouterr().err
