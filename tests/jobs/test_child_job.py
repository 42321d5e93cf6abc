"""`run_cli_job`: the real `dynllm-tui train --progress-jsonl` as a child process on the demo
slice: its progress events and summary, a cancel that stops it cleanly, its errors as
DynllmError, and a child that dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from dynllm_tui.jobs import child_process as child_job
from dynllm_tui.jobs.child_process import ChildJobError, run_cli_job
from dynllm_tui.jobs.training_lock import training_in_progress
from storage.errors import DynllmError
from storage.workspace import Workspace
from tests.conftest import REPO
from tests.reference_replay import check_workspace_run

TRAIN = ["train", "--no-profiles", "--epochs", "1", "--batch-size", "512"]


def runs(db) -> list[tuple]:
    with Workspace.open(db, create=False) as ws:
        return ws.conn.execute("SELECT id, status, epochs_done FROM runs ORDER BY id").fetchall()


def test_module_runs_as_the_cli():
    out = subprocess.run([sys.executable, "-m", "dynllm_tui.cli", "train", "--help"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert "--progress-jsonl" in out


def test_one_epoch_reports_progress_and_its_summary(demo_workspace):
    events: list[dict] = []
    summary = run_cli_job(TRAIN, demo_workspace, events.append, lambda: False)
    stages = {e["stage"] for e in events}
    assert {"train", "val", "epoch", "test"} <= stages
    first = events[0]
    assert set(first) >= {"stage", "epoch", "batch", "n_batches", "loss", "metrics"}
    assert first["stage"] == "train" and first["batch"] == 1 and first["loss"] > 0
    epoch = next(e for e in events if e["stage"] == "epoch")
    assert "recall@10" in epoch["metrics"]
    assert summary["run_id"] == 1 and summary["status"] == "done" and summary["epochs"] == 1
    assert set(summary) >= {"best_epoch", "test", "checkpoint", "seconds", "with_profiles",
                            "device"}
    # The metrics the child reported are the best model's, recomputed on an independent path.
    check_workspace_run(demo_workspace, summary["checkpoint"], summary["test"],
                        summary["with_profiles"])
    assert runs(demo_workspace) == [(1, "done", 1)]
    assert child_job.child_pids() == set()


def test_cancel_after_the_first_event_stops_cleanly(demo_workspace):
    events: list[dict] = []
    summary = run_cli_job([*TRAIN[:3], "5", *TRAIN[4:]], demo_workspace, events.append,
                          lambda: bool(events))
    assert events and summary["status"] == "cancelled"
    assert summary["epochs"] < 5
    (run_id, status, epochs_done), = runs(demo_workspace)
    assert epochs_done < 5
    assert training_in_progress(demo_workspace) is None
    assert status == "cancelled"


def test_cancel_after_the_first_epoch_keeps_it(demo_workspace):
    events: list[dict] = []
    summary = run_cli_job([*TRAIN[:3], "5", *TRAIN[4:]], demo_workspace, events.append,
                          lambda: any(e["stage"] == "epoch" for e in events))
    assert summary["status"] == "cancelled" and summary["best_epoch"] == 1
    assert 1 <= summary["epochs"] < 5 and summary["checkpoint"].endswith("best.pt")
    assert runs(demo_workspace) == [(1, "cancelled", summary["epochs"])]
    assert training_in_progress(demo_workspace) is None


def test_a_failing_job_raises_its_message(demo_workspace):
    with pytest.raises(DynllmError) as caught:
        run_cli_job([*TRAIN, "--ablation", "bogus"], demo_workspace, lambda e: None,
                    lambda: False)
    assert isinstance(caught.value, ChildJobError) and caught.value.returncode == 2
    message = str(caught.value)
    assert "bogus" in message and "Traceback" not in message
    assert training_in_progress(demo_workspace) is None


def test_an_empty_workspace_is_a_clear_error(tmp_path):
    db = tmp_path / "empty.db"
    Workspace.open(db).close()
    with pytest.raises(DynllmError, match="no interactions"):
        run_cli_job(TRAIN, db, lambda e: None, lambda: False)


def test_a_killed_child_says_so(demo_workspace):
    def kill(event: dict) -> None:
        for pid in child_job.child_pids():
            os.kill(pid, signal.SIGKILL)

    with pytest.raises(DynllmError, match="training process ended with signal 9"):
        run_cli_job(TRAIN, demo_workspace, kill, lambda: False)
    assert training_in_progress(demo_workspace) is None  # the kernel dropped its lock
