"""Issue 10: import, profiles and training as real processes, and the app's browsing queries in a
thread, all at once on one workspace; afterwards every count is what running them one after
the other gives. Real Online Retail rows, the real local LLM, a real one-epoch training."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from dynllm_tui.ui.reader import WorkspaceReader
from storage.browse import (
    active_run,
    data_version,
    list_runs,
    pipeline_status,
    user_detail,
    users_page,
)
from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace
from tests.conftest import REPO

CLI = [sys.executable, "-m", "dynllm_tui.cli"]
REPLAY_K = 50


def _slice(source: Path, out: Path, first: int, last: int) -> Path:
    """The header and data rows first..last (1-based) of the real file."""
    with gzip.open(source, "rt", encoding="utf-8", newline="") as src, \
            out.open("w", encoding="utf-8", newline="") as dst:
        for n, line in enumerate(src):
            if n == 0 or first <= n <= last:
                dst.write(line)
            if n > last:
                break
    return out


def _counts(db: Path) -> dict[str, int]:
    with Workspace.open(db, readonly=True) as ws:
        return {table: ws.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("users", "items", "interactions", "imports")}


def _browse_until(db: Path, stop: threading.Event, seen: dict[str, object]) -> None:
    """What the screens ask, over and over, through the app's own reader."""
    reader = WorkspaceReader(str(db))
    loops, errors = 0, []
    try:
        while not stop.is_set():
            try:
                page = reader.call(users_page, limit=20)
                reader.call(pipeline_status)
                reader.call(list_runs)
                reader.call(active_run)
                reader.call(data_version)
                if page.rows:
                    reader.call(user_detail, page.rows[0].user_id)
                loops += 1
            except Exception as exc:  # noqa: BLE001 - every failure is reported by the test
                errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.01)
    finally:
        reader.close()
        seen.update(loops=loops, errors=errors)


def test_import_profiles_train_and_browsing_at_once(tmp_path, online_retail_path):
    first = _slice(online_retail_path, tmp_path / "first.csv", 1, 2000)
    second = _slice(online_retail_path, tmp_path / "second.csv", 2001, 8000)
    reference = tmp_path / "reference.db"  # the same two imports one after the other
    with Workspace.open(reference) as ws:
        run_import(ws, preset_spec("online-retail", first))
        run_import(ws, preset_spec("online-retail", second))
    db = tmp_path / "ws.db"
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", first))
    users_before = _counts(db)["users"]

    stop, seen = threading.Event(), {}
    browser = threading.Thread(target=_browse_until, args=(db, stop, seen), daemon=True)
    browser.start()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    jobs = {
        "import": ["import", str(second), "--preset", "online-retail", "--json"],
        "profiles": ["profiles", "--limit", "2", "--no-embed", "--json"],
        "train": ["train", "--epochs", "1", "--device", "cpu", "--no-profiles", "--json"],
    }
    started = time.perf_counter()
    procs = {name: subprocess.Popen([*CLI, "--db", str(db), *args], cwd=REPO, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, args in jobs.items()}
    outputs = {name: proc.communicate(timeout=240) for name, proc in procs.items()}
    stop.set()
    browser.join(timeout=30)
    seconds = time.perf_counter() - started
    for name, proc in procs.items():
        assert proc.returncode == 0, (name, outputs[name][1][-2000:])
    assert seen["errors"] == [] and seen["loops"] > 0, seen

    # Interactions, users, items: exactly the sequential imports, nothing doubled or lost.
    assert _counts(db) == _counts(reference)
    imported = json.loads(outputs["import"][0])
    assert imported["rows_kept"] > 0 and not imported["already_imported"]

    # Profiles: one row per planned snapshot, no duplicate (user, as_of).
    profiled = json.loads(outputs["profiles"][0])
    with Workspace.open(db, readonly=True) as ws:
        rows, distinct = ws.conn.execute(
            "SELECT count(*), count(DISTINCT user_id || ':' || as_of) FROM profiles").fetchone()
        runs = ws.conn.execute("SELECT id, status, active, error FROM runs").fetchall()
        per_user = ws.conn.execute(
            "SELECT count(*), min(n), max(n), max(max_rank) FROM (SELECT user_id, count(*) AS n, "
            "max(rank) AS max_rank FROM recommendations WHERE list = 'all' "
            "GROUP BY user_id)").fetchone()
    assert profiled["planned"] >= 1 and rows == distinct == profiled["made"] + profiled["failed"]

    # The run: done, active, and a top-50 for every user it was trained on (the users there were
    # before the import, or after it, depending on when training read the workspace).
    trained = json.loads(outputs["train"][0])
    assert runs == [(trained["run_id"], "done", 1, None)]
    assert per_user[0] in (users_before, _counts(reference)["users"]), per_user
    assert per_user[1:] == (REPLAY_K, REPLAY_K, REPLAY_K)
    print(f"concurrent import, profiles, train and browsing: {seconds:.1f} s, "
          f"{seen['loops']} browsing loops")
