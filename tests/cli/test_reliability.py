"""Issue 10, the hostile-but-ordinary user: bad training settings, a missing, damaged or
read-only workspace, `recommend --k` out of range. Each probe: exit 2 and one line naming what
and where (or, for a read command on a read-only workspace, the answer), the workspace unchanged.

Real workspaces on the first 2,000 lines of the real Online Retail file, a real one-epoch run.
One file past our ~400-line mark on purpose: the probes share that trained workspace (built once
per module) and the helpers that run a command as another user or on a read-only mount.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dynllm_tui.cli import EXIT_ERROR, main
from dynllm_tui.jobs.recommend import recommend
from dynllm_tui.jobs.train_settings import RULES, TrainSettingsError
from dynllm_tui.jobs.training import train_job
from dynllm_tui.ui.reader import WorkspaceReader
from dynllm_tui.ui.training.training_form import parse_params
from storage.errors import DamagedWorkspaceError, DynllmError, ReadOnlyWorkspaceError
from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace
from tests.conftest import REPO, write_head

CLI = [sys.executable, "-m", "dynllm_tui.cli"]
REPLAY_K = 50


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runs(db: Path) -> list[tuple]:
    with Workspace.open(db, readonly=True) as ws:
        return ws.conn.execute("SELECT id, status, error, active FROM runs ORDER BY id").fetchall()


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def slice2k(tmp_path_factory, online_retail_path) -> Path:
    """The header and first 2,000 rows of the real file."""
    return write_head(online_retail_path, tmp_path_factory.mktemp("slice") / "slice2k.csv", 2000)


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory, slice2k) -> Path:
    """A workspace with the slice and one finished one-epoch run (top-50 per user stored)."""
    db = tmp_path_factory.mktemp("trained") / "ws.db"
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", slice2k))
    summary = train_job(db, epochs=1, device="cpu", no_profiles=True)
    assert summary.status == "done"
    return db


@pytest.fixture
def trained(tmp_path, trained_file) -> Path:
    db = tmp_path / "ws.db"
    shutil.copy(trained_file, db)
    return db


def _a_user(db: Path) -> str:
    with Workspace.open(db, readonly=True) as ws:
        return ws.conn.execute("SELECT external_id FROM users ORDER BY id").fetchone()[0]


# --- defects 3 and 6: training settings ---------------------------------------------------

BAD_SETTINGS = [  # the option, what it accepts, what the message quotes back
    (["--batch-size", "0"], "--batch-size: a whole number from 1 to 1,000,000 (got 0)"),
    (["--batch-size", "-4"], "--batch-size: a whole number from 1 to 1,000,000 (got -4)"),
    (["--lr", "nan"], "--lr: a positive number at most 10, such as 0.001 (got nan)"),
    (["--lr", "-1"], "--lr: a positive number at most 10, such as 0.001 (got -1.0)"),
    (["--lr", "0"], "--lr: a positive number at most 10, such as 0.001 (got 0.0)"),
    (["--lr", "1e309"], "--lr: a positive number at most 10, such as 0.001 (got inf)"),
    (["--epochs", "0"], "--epochs: a whole number from 1 to 10,000 (got 0)"),
    (["--epochs", "-1"], "--epochs: a whole number from 1 to 10,000 (got -1)"),
    (["--patience", "-1"], "--patience: a whole number from 0 to 10,000 (got -1)"),
    (["--seed", "-3"], "--seed: a whole number from 0 to 4,294,967,295 (got -3)"),
]


def test_bad_training_settings_are_refused_before_any_run(trained, capsys):
    before, runs = _sha(trained), _runs(trained)
    lock = trained.with_name(trained.name + ".train.lock")
    lock_before = lock.exists()
    for args, expected in BAD_SETTINGS:
        assert main(["--db", str(trained), "train", *args]) == EXIT_ERROR, args
        line = _one_error_line(capsys.readouterr().err)
        assert line == f"error: {expected}", line
    assert _sha(trained) == before and _runs(trained) == runs  # no run row, nothing written
    assert lock.exists() == lock_before
    # The job function applies the same rule, naming its keywords.
    with pytest.raises(TrainSettingsError, match=r"^batch_size: a whole number") as caught:
        train_job(trained, epochs=1, batch_size=0)
    with pytest.raises(TrainSettingsError, match="lr: .*got nan"):
        train_job(trained, epochs=1, lr=float("nan"))
    with pytest.raises(TrainSettingsError, match="epochs: .*got True"):
        train_job(trained, epochs=True)  # a bool is not a number of epochs
    assert set(caught.value.problems) == {"batch_size"}
    assert _runs(trained) == runs
    # And the Training form: the same words for the same values.
    raw = {"epochs": "0", "batch_size": "-4", "lr": "nan", "patience": "-1", "seed": "1.5"}
    params, errors = parse_params(raw)
    assert params is None and set(errors) == set(raw)
    for field, message in errors.items():
        assert message.startswith(f"{RULES[field].label}: {RULES[field].wants()}"), message


def test_bad_settings_in_a_real_process_no_traceback(trained):
    proc = subprocess.run([*CLI, "--db", str(trained), "train", "--batch-size", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_ERROR and proc.stdout == ""
    assert "--batch-size" in _one_error_line(proc.stderr)


def test_a_run_that_fails_after_it_is_recorded_says_why(trained):
    """Any error once the run row exists leaves it failed with the reason, never 'running',
    and never 'done' before its replay is stored."""
    runs = _runs(trained)

    def crash_in_training(*_: object) -> bool:
        raise RuntimeError("disk vanished")

    with pytest.raises(RuntimeError, match="disk vanished"):
        train_job(trained, epochs=1, device="cpu", no_profiles=True, cancel=crash_in_training)
    after = _runs(trained)
    assert len(after) == len(runs) + 1
    run_id, status, error, active = after[-1]
    assert (status, active) == ("failed", 0) and error == "RuntimeError: disk vanished"

    def crash_in_replay(done: int, total: int) -> None:
        raise RuntimeError("replay broke")

    with pytest.raises(RuntimeError, match="replay broke"):
        train_job(trained, epochs=1, device="cpu", no_profiles=True, on_replay=crash_in_replay)
    run_id, status, error, active = _runs(trained)[-1]
    assert (status, active) == ("failed", 0) and "replay broke" in error
    with Workspace.open(trained, readonly=True) as ws:
        stored = ws.conn.execute("SELECT count(*) FROM recommendations WHERE run_id = ?",
                                 (run_id,)).fetchone()[0]
        active_runs = ws.conn.execute("SELECT id FROM runs WHERE active = 1").fetchall()
    assert stored == 0 and active_runs == [(runs[0][0],)]  # the finished run stays active

    def interrupt(*_: object) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_job(trained, epochs=1, device="cpu", no_profiles=True, cancel=interrupt)
    assert _runs(trained)[-1][1:3] == ("failed", "interrupted before the run finished")
    assert not [r for r in _runs(trained) if r[1] == "running"]


# --- defect 10: recommend --k ----------------------------------------------------------------


def test_recommend_k_out_of_range(trained, capsys):
    user = _a_user(trained)
    before = _sha(trained)
    for k in ("0", "-5"):
        assert main(["--db", str(trained), "recommend", user, "--k", k]) == EXIT_ERROR
        assert f"--k must be at least 1 (got {k})" in _one_error_line(capsys.readouterr().err)
    with pytest.raises(DynllmError, match="k .* at least 1"):
        recommend(trained, user, k=0)
    assert main(["--db", str(trained), "recommend", user, "--k", "100000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + REPLAY_K + 1
    assert out[-1] == (f"note: run 1 stored {REPLAY_K} recommendations for user {user}; "
                       f"all {REPLAY_K} shown (asked for 100,000)")
    assert main(["--db", str(trained), "recommend", user, "--k", str(10**30), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stored"] == REPLAY_K and len(data["items"]) == REPLAY_K
    assert main(["--db", str(trained), "recommend", user, "--k", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["k"], data["stored"], len(data["items"])) == (3, REPLAY_K, 3)
    assert _sha(trained) == before


# --- defect 7: a mistyped --db creates nothing ------------------------------------------------

READ_AND_JOB_COMMANDS = [
    ["status"], ["check"], ["recommend", "12346"], ["export", "recommendations", "OUT"],
    ["train", "--epochs", "1"], ["profiles", "--limit", "2"], ["evaluate"], [],  # [] = the app
]


def test_a_missing_workspace_is_named_and_nothing_is_created(tmp_path, capsys):
    typo = tmp_path / "typo" / "dir" / "ws.db"
    for command in READ_AND_JOB_COMMANDS:
        args = [a.replace("OUT", str(tmp_path / "out.csv")) for a in command]
        assert main(["--db", str(typo), *args]) == EXIT_ERROR, command
        assert f"no workspace at {typo}" in _one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder, file, lock or CSV
    empty = tmp_path / "empty.db"
    empty.touch()
    for command in (["status"], ["check"], []):
        assert main(["--db", str(empty), *command]) == EXIT_ERROR
        assert "(the file is empty)" in _one_error_line(capsys.readouterr().err)
    assert empty.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "empty.db"]


def test_dev_null_is_not_a_workspace(capsys):
    journal = Path("/dev/null-journal")
    existed = journal.exists()
    for command in (["status"], ["check"], ["recommend", "1"], ["train"]):
        assert main(["--db", "/dev/null", *command]) == EXIT_ERROR
        assert "no workspace at /dev/null" in _one_error_line(capsys.readouterr().err)
    assert journal.exists() == existed


# --- defect 5: a damaged workspace -----------------------------------------------------------

def _damage_middle_page(db: Path, table: str = "interactions") -> int:
    """Overwrite a leaf page in the middle of `table` (found through SQLite's dbstat)."""
    with sqlite3.connect(db) as conn:
        pages = [p for (p,) in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
            (table,))]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    page = pages[len(pages) // 2]
    with db.open("r+b") as fh:
        fh.seek((page - 1) * page_size)
        fh.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    return page


DAMAGE_COMMANDS = [["status"], ["check"], ["recommend", "USER"], ["export", "recommendations",
                   "OUT"], ["train", "--epochs", "1", "--device", "cpu"], ["evaluate"], []]


@pytest.mark.parametrize("cut", [18, 50, 97, "page"])
def test_a_damaged_workspace_is_one_line_with_what_to_do(tmp_path, trained, capsys, cut):
    user = _a_user(trained)
    if cut == "page":
        _damage_middle_page(trained)
    else:
        with trained.open("r+b") as fh:
            fh.truncate(cut)
    damaged = _sha(trained)
    for command in DAMAGE_COMMANDS:
        if cut == "page" and not command:
            continue  # the app opens (the damage is further in): its reader is probed below
        args = [a.replace("OUT", str(tmp_path / "out.csv")).replace("USER", user)
                for a in command]
        code = main(["--db", str(trained), *args])
        err = capsys.readouterr().err
        if cut == "page" and code == 0:  # this command never reads the damaged page
            assert command in (["status"], ["recommend", "USER"], ["export", "recommendations",
                                                                   "OUT"]), command
            continue
        assert code == EXIT_ERROR, (command, err)
        line = _one_error_line(err)
        assert f"{trained}: the workspace file is damaged" in line, line
        assert "restore it from a copy" in line and f"sqlite3 {trained} .recover" in line
    assert _sha(trained) == damaged  # nothing tried to write over it
    # `check` in a real process: no traceback, exit 2, the findings, one error line.
    proc = subprocess.run([*CLI, "--db", str(trained), "check"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == EXIT_ERROR
    assert "the workspace file is damaged" in _one_error_line(proc.stderr)
    if cut == "page":
        # The app's reader: a damaged page met while browsing is the same one line.
        reader = WorkspaceReader(str(trained))
        try:
            with pytest.raises(DamagedWorkspaceError, match="restore it from a copy"):
                reader.call(lambda ws: ws.conn.execute(
                    "SELECT sum(quantity) FROM interactions").fetchone())
        finally:
            reader.close()


def test_check_passes_a_sound_workspace(trained, capsys):
    assert main(["--db", str(trained), "check", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["problems"] == [] and report["counts"]["runs"] == 1
    # Three lists per user: all (50), buy-again and discover (50 each at most).
    users = report["counts"]["users"]
    assert REPLAY_K * users < report["counts"]["recommendations"] <= 3 * REPLAY_K * users


# --- defect 8: a read-only workspace ---------------------------------------------------------

READ_COMMANDS = [["status", "--json"], ["check"], ["recommend", "USER", "--k", "3"],
                 ["export", "recommendations", "OUT", "--k", "2"]]
WRITE_COMMANDS = [["train", "--epochs", "1", "--device", "cpu"], ["evaluate"],
                  ["profiles", "--limit", "1"], ["import", "SLICE", "--preset", "online-retail"]]

# Runs each command in turn and prints one JSON line per command: its exit code and stderr;
# then the app's reader lists the runs and tries to choose the active one.
READ_ONLY_SCRIPT = r"""
import contextlib, io, json, sys
from dynllm_tui.cli import main
db, commands = sys.argv[1], json.loads(sys.argv[2])
for command in commands:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(["--db", db, *command])
    print(json.dumps({"command": command, "code": code, "err": err.getvalue(),
                      "out": out.getvalue()}))
from dynllm_tui.ui.reader import WorkspaceReader
from storage.browse import list_runs, set_active_run, user_detail, users_page
reader = WorkspaceReader(db)
runs = reader.call(list_runs)
page = reader.call(users_page, limit=5)
events = reader.call(user_detail, page.rows[0].user_id).events
try:
    reader.call(set_active_run, runs[0].id)
    message = ""
except Exception as exc:
    message = str(exc)
print(json.dumps({"command": ["reader"], "code": len(runs), "err": message,
                  "out": f"{page.total} {events}"}))
"""


def _read_only_dir(trained: Path) -> Path:
    """A folder any user can read, holding a copy of the workspace (pytest's tmp folders are
    private to their owner, and the read-only probes run as another user when we are root)."""
    folder = Path(tempfile.mkdtemp(prefix="dynllm-ro-", dir="/tmp"))
    shutil.copy(trained, folder / "ws.db")
    return folder


def _check_read_only_results(lines: list[str], db: Path, user: str) -> None:
    results = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(results) == len(READ_COMMANDS) + len(WRITE_COMMANDS) + 1, lines
    for result in results[:len(READ_COMMANDS)]:
        assert result["code"] == 0, result
    assert json.loads(results[0]["out"])["interactions"] > 1000
    assert "ok (integrity check passed" in results[1]["out"]
    assert results[2]["out"].startswith(f"user {user} — run 1")
    for result in results[len(READ_COMMANDS):-1]:
        assert result["code"] == EXIT_ERROR, result
        line = _one_error_line(result["err"])
        assert f"{db}: the workspace is read-only" in line, line
    reader = results[-1]
    assert reader["code"] == 1 and "read-only" in reader["err"], reader
    users, events = map(int, reader["out"].split())
    assert users > 50 and events > 0  # the users table and a user's detail, read-only


def _probe_commands(folder: Path, slice2k: Path, user: str, out_dir: Path) -> list[list[str]]:
    readable = shutil.copy(slice2k, out_dir / "slice2k.csv")  # pytest's folders are private
    os.chmod(readable, 0o644)
    fill = {"USER": user, "OUT": str(out_dir / "out.csv"), "SLICE": str(readable)}
    return [[fill.get(a, a) for a in command] for command in READ_COMMANDS + WRITE_COMMANDS]


def test_a_read_only_file_and_folder_can_be_read_not_written(trained, slice2k):
    """chmod 444 file, 555 folder; as root (whom chmod does not stop) the probe runs as the
    unprivileged user 65534."""
    folder = _read_only_dir(trained)
    out_dir = Path(tempfile.mkdtemp(prefix="dynllm-out-", dir="/tmp"))
    db = folder / "ws.db"
    user = _a_user(trained)
    try:
        os.chmod(out_dir, 0o777)
        os.chmod(db, 0o444)
        os.chmod(folder, 0o555)
        before = _sha(db)
        commands = _probe_commands(folder, slice2k, user, out_dir)
        prefix = []
        if os.geteuid() == 0:
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(out_dir)}
        proc = subprocess.run([*prefix, sys.executable, "-c", READ_ONLY_SCRIPT, str(db),
                               json.dumps(commands)], cwd=REPO, capture_output=True, text=True,
                              timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        _check_read_only_results(proc.stdout.splitlines(), db, user)
        assert _sha(db) == before and sorted(p.name for p in folder.iterdir()) == ["ws.db"]
        assert (out_dir / "out.csv").exists()
    finally:
        os.chmod(folder, 0o755)
        shutil.rmtree(folder)
        shutil.rmtree(out_dir)


def test_a_workspace_on_a_read_only_filesystem(trained, slice2k):
    """A read-only bind mount (root in a private mount namespace): EROFS, whoever asks."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root for a private read-only mount; the chmod probe covers the rest")
    folder = _read_only_dir(trained)
    out_dir = Path(tempfile.mkdtemp(prefix="dynllm-out-", dir="/tmp"))
    db = folder / "ws.db"
    user = _a_user(trained)
    try:
        before = _sha(db)
        commands = _probe_commands(folder, slice2k, user, out_dir)
        script = (f'mount --bind -o ro "{folder}" "{folder}" && exec "$0" -c "$1" "$2" "$3"')
        proc = subprocess.run(["unshare", "-m", "sh", "-c", script, sys.executable,
                               READ_ONLY_SCRIPT, str(db), json.dumps(commands)], cwd=REPO,
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        _check_read_only_results(proc.stdout.splitlines(), db, user)
        assert _sha(db) == before and sorted(p.name for p in folder.iterdir()) == ["ws.db"]
    finally:
        shutil.rmtree(folder)
        shutil.rmtree(out_dir)


def test_a_read_only_connection_says_read_only_on_write(trained):
    """In-process (root passes chmod): a workspace opened for reading refuses writes."""
    from storage.browse import set_active_run

    before = _sha(trained)
    with Workspace.open(trained, readonly=True) as ws:
        with pytest.raises(ReadOnlyWorkspaceError, match="read-only"):
            set_active_run(ws, 1)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ws.conn.execute("DELETE FROM runs")
    assert _sha(trained) == before
