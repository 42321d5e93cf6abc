"""Ctrl-C on import (issue 10, defect 9): one rule. Before the commit point nothing is written
and the exit is 130; after it the import completes, exits 0 and says that it finished."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dynllm_tui.terminal import cancel_on_sigint
from storage.errors import ImportCancelled
from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace
from tests.conftest import DEMO_SLICE, workspace_fingerprint

REPO = Path(__file__).resolve().parents[2]


def _has_open(pid: int, path: Path) -> bool:
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    return True
            except OSError:
                continue
    except OSError:
        pass
    return False


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs /proc to see the reading")
def test_ctrl_c_during_a_real_import_writes_nothing_and_exits_130(demo_workspace,
                                                                 online_retail_path):
    """The whole Online Retail file into a workspace holding the demo; Ctrl-C as soon as the
    child has the file open (its SIGINT handler is in place by then)."""
    before = workspace_fingerprint(demo_workspace)
    child = subprocess.Popen(
        [sys.executable, "-m", "dynllm_tui.cli", "--db", str(demo_workspace), "import",
         str(online_retail_path), "--preset", "online-retail"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not _has_open(child.pid, online_retail_path.resolve()):
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.002)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, (out, err)
    assert "interrupted: import cancelled; the workspace is unchanged" in err
    assert "Import #" not in out
    assert workspace_fingerprint(demo_workspace) == before


def _import_with(db: Path, on_progress) -> object:
    with Workspace.open(db) as ws, cancel_on_sigint() as cancel:
        summary = run_import(ws, preset_spec("online-retail", DEMO_SLICE),
                             progress=lambda done, total, phase: on_progress(phase),
                             should_cancel=cancel, commit_point=cancel.commit_point)
        return summary, cancel


def test_ctrl_c_just_before_the_commit_point_rolls_back(tmp_path):
    """A real SIGINT in the last step before the commit point: rolled back, nothing written."""
    db = tmp_path / "ws.db"
    Workspace.open(db).close()
    before = workspace_fingerprint(db)
    sent = []

    def on_progress(phase: str) -> None:
        if phase == "writing" and not sent:
            sent.append(phase)
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(ImportCancelled, match="the workspace is unchanged"):
        _import_with(db, on_progress)
    assert sent and workspace_fingerprint(db) == before


def test_ctrl_c_after_the_commit_point_lets_the_import_finish(tmp_path, capsys):
    """SIGINT (twice) once the commit point is passed: no KeyboardInterrupt, all committed."""
    db = tmp_path / "ws.db"

    def on_progress(phase: str) -> None:
        if phase == "committing":
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    summary, cancel = _import_with(db, on_progress)
    assert cancel.interrupted_while_committing and not cancel()
    err = capsys.readouterr().err
    assert "already past the commit point: finishing" in err and "stopping" not in err
    stored = sqlite3.connect(db).execute("SELECT count(*) FROM interactions").fetchone()[0]
    assert stored == summary.rows_kept > 10_000


def test_an_import_waiting_for_the_write_lock_can_be_cancelled(demo_workspace, tmp_path,
                                                              online_retail_path):
    """Another connection holds the write lock: the import waits, polling, and a cancel while
    it waits stops it with the workspace unchanged."""
    import gzip

    with gzip.open(online_retail_path, "rt", encoding="utf-8", newline="") as fh:
        slice_path = tmp_path / "slice.csv"
        slice_path.write_text("".join(next(fh) for _ in range(2001)), encoding="utf-8",
                              newline="")
    before = workspace_fingerprint(demo_workspace)
    holder = sqlite3.connect(demo_workspace, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    phases: list[str] = []
    try:
        with Workspace.open(demo_workspace) as ws, pytest.raises(ImportCancelled):
            run_import(ws, preset_spec("online-retail", slice_path),
                       progress=lambda done, total, phase: phases.append(phase),
                       should_cancel=lambda: "waiting for another write to finish" in phases)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert workspace_fingerprint(demo_workspace) == before


def test_a_write_lock_held_too_long_is_one_clear_line(tmp_path, monkeypatch):
    from storage.errors import WorkspaceError
    from storage.importer import writing

    db = tmp_path / "ws.db"
    Workspace.open(db).close()
    monkeypatch.setattr(writing, "LOCK_WAIT_SECONDS", 0.5)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Workspace.open(db) as ws, pytest.raises(
                WorkspaceError, match="another process has been writing to this workspace"):
            run_import(ws, preset_spec("online-retail", DEMO_SLICE))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert sqlite3.connect(db).execute("SELECT count(*) FROM imports").fetchone() == (0,)
