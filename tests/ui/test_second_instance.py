"""A training is exclusive and visible across processes: another process holding the
workspace's training lock is shown on Home and Training, Start is refused, `train_job` raises a
clear error; runs left 'running' by a dead process show as interrupted; the lock goes with its
holder (failed job, killed process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dynllm_tui.jobs.training import train_job
from dynllm_tui.jobs.training_lock import (
    TrainingBusyError,
    acquire,
    holding_train_lock,
    lock_path,
    training_in_progress,
)
from dynllm_tui.ui.run_status import run_status
from storage.errors import DynllmError
from storage.workspace import Workspace
from tests.conftest import REPO
from tests.ui.conftest import add_unfinished_run, make_app, settle
from tests.ui.test_app import text

SIZE = (80, 24)


def hold_lock(db: Path, run_id: int | None = None) -> subprocess.Popen:
    """Another process that takes the training lock, says so, and sleeps until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from dynllm_tui.jobs.training_lock import acquire
        lock = acquire({str(db)!r}, {run_id!r})
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


@pytest.fixture
def other_process(ui_workspace) -> Iterator[subprocess.Popen]:
    proc = hold_lock(ui_workspace)
    yield proc
    proc.kill()
    proc.wait()


def test_lock_probe_and_clear_error(ui_workspace, other_process):
    holder = training_in_progress(ui_workspace)
    assert holder is not None and holder["pid"] == other_process.pid and holder["started_at"]
    with pytest.raises(DynllmError) as caught:
        train_job(ui_workspace, epochs=1, no_profiles=True)
    message = str(caught.value)
    assert isinstance(caught.value, TrainingBusyError)
    assert message.startswith(f"another training is running on {ui_workspace.resolve()} "
                              f"(pid {other_process.pid}, started ")
    assert "wait for it to finish or stop it" in message
    assert training_in_progress(ui_workspace)["pid"] == other_process.pid  # probing stole nothing
    other_process.kill()
    other_process.wait()
    assert training_in_progress(ui_workspace) is None  # the kernel dropped a dead holder's lock
    with holding_train_lock(ui_workspace) as lock:
        assert lock is not None and training_in_progress(ui_workspace)["pid"] == os.getpid()


def test_lock_is_released_when_the_job_fails(tmp_path):
    db = tmp_path / "empty.db"
    Workspace.open(db).close()
    with pytest.raises(DynllmError, match="no interactions"):
        train_job(db, epochs=1, no_profiles=True)
    assert training_in_progress(db) is None and lock_path(db).exists()
    assert lock_path(db).read_text() == ""  # no stale holder left in the file either
    acquire(db).release()  # free for the next training


def test_interrupted_runs():
    assert run_status("running", 3, "2026-01-01T10:00:00+00:00", None) == "interrupted"
    assert run_status("done", 3, "2026-01-01T10:00:00+00:00", None) == "done"
    live = {"pid": 1, "run_id": None, "started_at": "2026-01-02T10:00:00+00:00"}
    assert run_status("running", 3, "2026-01-01T10:00:00+00:00", live) == "interrupted"
    assert run_status("running", 4, "2026-01-02T10:00:05+00:00", live) == "running"
    assert run_status("running", 3, "2026-01-01T10:00:00+00:00", {**live, "run_id": 3}) == (
        "running")


async def test_app_shows_the_other_training_and_refuses_start(ui_workspace, other_process):
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pipeline = text(app.screen.query_one("#pipeline"))
        assert (f"training in progress in another process (pid {other_process.pid}"
                in pipeline)
        await pilot.press("4")
        await settle(pilot)
        screen = app.screen
        status = text(screen.query_one("#train-status"))
        assert f"training in progress in another process (pid {other_process.pid}" in status
        screen.query_one("#epochs").value = "1"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not screen.running
        refused = [n.message for n in app._notifications if n.severity == "error"]
        assert refused and refused[0].startswith("Not started: training in progress in "
                                                 f"another process (pid {other_process.pid}")
        other_process.kill()
        other_process.wait()
        screen.poll_lock()  # what the 2-second poll does
        await settle(pilot)
        assert "another process" not in text(screen.query_one("#train-status"))
    with Workspace.open(ui_workspace) as ws:
        assert ws.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1  # only the fixture's


async def test_a_run_left_running_by_a_dead_process_shows_as_interrupted(ui_workspace):
    add_unfinished_run(ui_workspace, 2, "running")
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "#2 interrupted" in text(app.screen.query_one("#pipeline"))
        await pilot.press("4")
        await settle(pilot)
        status = text(app.screen.query_one("#train-status"))
        assert "Last run #2: interrupted" in status
        assert "dynllm-tui train --resume 2" in status
    proc = hold_lock(ui_workspace, run_id=2)  # now a live process says it is training run 2
    try:
        app = make_app(ui_workspace)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            pipeline = text(app.screen.query_one("#pipeline"))
            assert "#2 running" in pipeline and "run #2" in pipeline
    finally:
        proc.kill()
        proc.wait()
