"""Golden files of both CSV exports: the bytes written by `dynllm-tui export ...` (the installed
console script and `dynllm_tui.cli.main`) and by `storage.exports` are compared with files
checked in under tests/golden/exports/.

The workspace is the real demo slice plus three deterministic runs written here (run 1 active,
runs 2 and 3 not), with item titles, a customer id and a model name that a spreadsheet would run
as a formula, a title with a comma, quotes and accents, and an item without a title. Each user
has 12 stored recommendations per list, so every export with k <= 10 cuts them short. Runs 1
and 2 are stored as before the buy-again/discover lists (the "all" list only, no reasons); run 3
has all three lists with reasons, one of which a spreadsheet would run as a formula.

`generated_at` is the one cell that depends on the clock: the in-process exports run with a
frozen clock and must match byte for byte; the console script's output must match once its
`generated_at` (checked to be the time of the run, ISO 8601 UTC) is replaced by the frozen value.

After an intended change of the export format, review the difference and regenerate with

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/storage/test_exports_golden.py

(see tests/golden/README.md).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import storage.exports
from dynllm_tui.cli import main
from models.vocabulary import FACETS
from storage.exports import (
    FACET_KEY_COLUMNS,
    RECOMMENDATION_COLUMNS,
    export_facet_weights,
    export_recommendations,
)
from storage.workspace import Workspace

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "exports"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
FROZEN = datetime(2026, 1, 5, 12, 34, 56, tzinfo=UTC)
FROZEN_TEXT = "2026-01-05T12:34:56Z"

# Titles given to the first items (by store id) that the runs recommend.
TITLES = [
    '=HYPERLINK("http://example.com","click")',
    "@SUM(A1:A9)",
    "+44 PHONE CASE",
    "-10% GIFT BOX",
    "\tTAB FIRST",
    "\rCARRIAGE RETURN FIRST",
    'CRÈME, "BRÛLÉE" SET',
    None,  # no title: an empty cell
]
FORMULA_USER = "@evil"  # a customer id that a spreadsheet would run
# The agreed header of the recommendations export, which every later column comes after.
AGREED_HEADER = ("user_id", "rank", "item_id", "item_title", "score", "run_id", "model",
                 "generated_at")
LISTS_RUN = 3  # the run stored with the three lists and reasons


class _FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):  # the only clock storage.exports reads
        return FROZEN if tz is not None else FROZEN.replace(tzinfo=None)


def _reason(list_name: str, rank: int, n: int) -> str:
    """A deterministic reason in the replay's words; one starts like a formula."""
    if list_name == "buy-again" and rank == 1 and n == 0:
        return "=bought 3 times, last 2 days ago"
    if list_name == "buy-again" or (list_name == "all" and rank % 2):
        return f"bought {rank + 1} times, last {rank * 3 + n} days ago; like CRÈME, \"BRÛLÉE\" SET"
    return f"new to this customer; interests: party goods, kitchenware; like ITEM {rank}"


def _write_runs(db: Path) -> list[str]:
    """Three finished runs over three customers; returns their store ids (sorted)."""
    with Workspace.open(db) as ws, ws.transaction() as conn:
        users = [r for r in conn.execute(
            "SELECT id, external_id FROM users ORDER BY external_id LIMIT 3")]
        # The third customer gets an id that starts like a formula.
        conn.execute("UPDATE users SET external_id = ? WHERE id = ?", (FORMULA_USER, users[2][0]))
        items = [i for (i,) in conn.execute("SELECT id FROM items ORDER BY external_id LIMIT 14")]
        for item, title in zip(items, TITLES, strict=False):
            conn.execute("UPDATE items SET title = ? WHERE id = ?", (title, item))
        for run, model, active in ((1, "dynllm", 1), (2, "=cmd|' /C calc'!A0", 0)):
            conn.execute(
                "INSERT INTO runs (id, created_at, finished_at, status, config, active) "
                "VALUES (?, '2026-01-05T10:00:00+00:00', '2026-01-05T10:12:00+00:00', 'done', ?, "
                "?)", (run, json.dumps({"model_name": model}), active))
            for n, (user, _ext) in enumerate(users):
                ranked = items[n + run - 1:] + items[:n + run - 1]  # a different order each
                for rank, item in enumerate(ranked[:12], start=1):
                    score = round(2.5 - 0.3137 * rank + 0.0123 * n - 0.5 * (run - 1), 9)
                    conn.execute("INSERT INTO recommendations (run_id, user_id, rank, item_id, "
                                 "score, bought_before) VALUES (?, ?, ?, ?, ?, ?)",
                                 (run, user, rank, item, score, int(rank % 3 == 0)))
                for j in range(3 + n):
                    raw = [1.0 + ((j + f + run) % 4) * 0.25 for f in range(4)]
                    weights = [round(w / sum(raw), 7) for w in raw]
                    ts = 1_320_105_600 + j * 7 * 86_400 + n * 3_600
                    conn.executemany("INSERT INTO facet_weights VALUES (?, ?, ?, ?, ?)",
                                     [(run, user, ts, facet, w)
                                      for facet, w in zip(FACETS, weights, strict=True)])
        # Run 3: what the replay stores now, three lists per user with a reason each.
        conn.execute(
            "INSERT INTO runs (id, created_at, finished_at, status, config, active) "
            "VALUES (?, '2026-01-06T10:00:00+00:00', '2026-01-06T10:12:00+00:00', 'done', ?, 0)",
            (LISTS_RUN, json.dumps({"model_name": "dynllm + repeat"})))
        for n, (user, _ext) in enumerate(users):
            for list_name, first in (("all", 0), ("buy-again", 1), ("discover", 2)):
                ranked = items[first + n:] + items[:first + n]
                for rank, item in enumerate(ranked[:12], start=1):
                    bought = list_name == "buy-again" or (list_name == "all" and rank % 2 == 1)
                    conn.execute(
                        "INSERT INTO recommendations (run_id, list, user_id, rank, item_id, "
                        "score, bought_before, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (LISTS_RUN, list_name, user, rank, item,
                         round(1.75 - 0.2113 * rank + 0.031 * n - 0.07 * first, 9),
                         int(bought), _reason(list_name, rank, n)))
    return sorted([ext for _id, ext in users[:2]] + [FORMULA_USER])


@pytest.fixture(scope="module")
def golden_workspace(tmp_path_factory, demo_workspace_file) -> tuple[Path, list[str]]:
    db = tmp_path_factory.mktemp("golden") / "ws.db"
    shutil.copy(demo_workspace_file, db)
    return db, _write_runs(db)


def _cases(users: list[str]) -> dict[str, dict]:
    """Golden file name -> (what, options as the CLI takes them)."""
    first, second = (u for u in users if u != FORMULA_USER)
    return {
        "recommendations.csv": {"what": "recommendations"},  # active run, k 10 of 12 stored
        "recommendations_run2_k3_users.csv": {
            "what": "recommendations", "run": 2, "k": 3, "users": [FORMULA_USER, first]},
        "facets.csv": {"what": "facets"},
        "facets_run2_user.csv": {"what": "facets", "run": 2, "users": [second]},
    }


def _argv(db: Path, out: Path, case: dict) -> list[str]:
    argv = ["--db", str(db), "export", case["what"], str(out)]
    if "k" in case:
        argv += ["--k", str(case["k"])]
    if "run" in case:
        argv += ["--run", str(case["run"])]
    if "users" in case:
        argv += ["--users", ",".join(case["users"])]
    if "list" in case:
        argv += ["--list", case["list"]]
    if case.get("reasons"):
        argv.append("--reasons")
    return argv


def _by_function(db: Path, out: Path, case: dict) -> int:
    with Workspace.open(db, create=False) as ws:
        if case["what"] == "recommendations":
            return export_recommendations(ws, out, k=case.get("k", 10), run_id=case.get("run"),
                                          users=case.get("users"))
        return export_facet_weights(ws, out, run_id=case.get("run"), users=case.get("users"))


def _check_golden(name: str, data: bytes) -> None:
    golden = GOLDEN / name
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(data)
    assert golden.exists(), f"{golden} is missing: run with UPDATE_GOLDEN=1 to create it"
    expected = golden.read_bytes()
    if data != expected:  # a readable difference, line by line
        assert data.decode("utf-8").splitlines() == expected.decode("utf-8").splitlines()
    assert data == expected  # line endings too


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@pytest.mark.parametrize("name", ["recommendations.csv", "recommendations_run2_k3_users.csv",
                                  "facets.csv", "facets_run2_user.csv"])
def test_exports_match_golden_files(golden_workspace, tmp_path, monkeypatch, capsys, name):
    db, users = golden_workspace
    case = _cases(users)[name]
    monkeypatch.setattr(storage.exports, "datetime", _FrozenClock)

    by_function = tmp_path / "function.csv"
    written = _by_function(db, by_function, case)
    data = by_function.read_bytes()
    _check_golden(name, data)

    by_cli = tmp_path / "cli.csv"
    assert main(_argv(db, by_cli, case)) == 0
    assert capsys.readouterr().out.strip() == f"wrote {written:,} rows to {by_cli}"
    assert by_cli.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.csv", "function.csv"]

    # What the golden file says, so that a regenerated golden file cannot silently be wrong.
    rows = _rows(data)
    assert data.endswith(b"\r\n") and not data.startswith(b"\xef\xbb\xbf")  # CSV, no BOM
    assert len(rows) - 1 == written > 0
    wanted = set(case.get("users", users))
    shown = {r[0] for r in rows[1:]}
    assert shown == {("'" + u if u == FORMULA_USER else u) for u in wanted}
    def order(row: list[str]) -> tuple:  # by customer id as stored, then rank or time
        second = int(row[1]) if case["what"] == "recommendations" else row[1]
        return row[0].removeprefix("'"), second

    assert rows[1:] == sorted(rows[1:], key=order)
    if case["what"] == "recommendations":
        # The agreed header, then bought_before appended at its end.
        assert tuple(rows[0]) == RECOMMENDATION_COLUMNS == (*AGREED_HEADER, "bought_before")
        assert all(int(r[8]) == (int(r[1]) % 3 == 0) for r in rows[1:])  # as stored
        k = case.get("k", 10)
        assert written == k * len(wanted)  # 12 stored per user, k of them exported
        for user in shown:
            assert [int(r[1]) for r in rows[1:] if r[0] == user] == list(range(1, k + 1))
        run = case.get("run", 1)
        assert {r[5] for r in rows[1:]} == {str(run)}
        assert {r[6] for r in rows[1:]} == {"dynllm" if run == 1 else "'=cmd|' /C calc'!A0"}
        assert {r[7] for r in rows[1:]} == {FROZEN_TEXT}
        titles = {r[3] for r in rows[1:]}
        for title in titles:  # nothing a spreadsheet would run
            assert not title.startswith(("=", "+", "-", "@", "\t", "\r"))
        assert all(re.fullmatch(r"-?[0-9]+\.[0-9]{6}", r[4]) for r in rows[1:])
        if not case.get("k"):
            assert {"'=HYPERLINK(\"http://example.com\",\"click\")", "'@SUM(A1:A9)",
                    "'+44 PHONE CASE", "'-10% GIFT BOX", "'\tTAB FIRST",
                    "'\rCARRIAGE RETURN FIRST", 'CRÈME, "BRÛLÉE" SET', ""} <= titles
            assert any(float(r[4]) < 0 and r[4].startswith("-") for r in rows[1:])
    else:
        # A four-facet run keeps the header it had when the table had four columns.
        assert tuple(rows[0]) == (*FACET_KEY_COLUMNS, *FACETS)
        assert tuple(rows[0]) == ("user_id", "as_of", "crowd_segment", "interests",
                                  "categories", "brands")
        for r in rows[1:]:
            assert datetime.strptime(r[1], "%Y-%m-%dT%H:%M:%SZ")
            assert sum(float(w) for w in r[2:]) == pytest.approx(1.0, abs=1e-5)


def _console_script() -> Path:
    script = Path(sys.executable).with_name("dynllm-tui")
    if not script.exists():
        pytest.fail(f"{script} is missing: install the package (pip install -e '.[dev]')")
    return script


@pytest.mark.parametrize("name", ["recommendations_run2_k3_users.csv", "facets.csv"])
def test_console_script_writes_the_golden_bytes(golden_workspace, tmp_path, name):
    db, users = golden_workspace
    case = _cases(users)[name]
    out = tmp_path / name
    before = datetime.now(UTC).replace(microsecond=0)
    done = subprocess.run([str(_console_script()), *_argv(db, out, case)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    after = datetime.now(UTC)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("wrote ") and str(out) in done.stdout
    data = out.read_bytes()
    if case["what"] == "recommendations":
        stamps = {r[7] for r in _rows(data)[1:]}
        assert len(stamps) == 1
        (stamp,) = stamps
        when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert before <= when <= after
        # generated_at is followed by bought_before, the last column.
        data = re.sub(rb"," + re.escape(stamp.encode()) + rb",([01]?)\r\n",
                      b"," + FROZEN_TEXT.encode() + rb",\1\r\n", data)
    assert data == (GOLDEN / name).read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind


def _list_cases(users: list[str]) -> dict[str, dict]:
    """Golden file name -> options of the list and reasons exports (all of run 3)."""
    first = min(u for u in users if u != FORMULA_USER)
    return {
        "recommendations_run3_discover_reasons.csv": {"list": "discover", "reasons": True},
        "recommendations_run3_buy-again_k3_users_reasons.csv": {
            "list": "buy-again", "reasons": True, "k": 3, "users": [FORMULA_USER, first]},
        "recommendations_run3_all.csv": {"list": "all", "reasons": False},
    }


@pytest.mark.parametrize("name", ["recommendations_run3_discover_reasons.csv",
                                  "recommendations_run3_buy-again_k3_users_reasons.csv",
                                  "recommendations_run3_all.csv"])
def test_list_and_reason_exports_match_golden_files(golden_workspace, tmp_path, monkeypatch,
                                                    name):
    """The buy-again and discover lists, with and without reasons: the bytes of
    storage.exports and of the export job the CLI calls (export_job's list_name/reasons)."""
    from dynllm_tui.jobs.export import export_job

    db, users = golden_workspace
    case = _list_cases(users)[name]
    monkeypatch.setattr(storage.exports, "datetime", _FrozenClock)
    by_function = tmp_path / "function.csv"
    with Workspace.open(db, create=False) as ws:
        written = export_recommendations(ws, by_function, k=case.get("k", 10), run_id=LISTS_RUN,
                                         users=case.get("users"), list=case["list"],
                                         reasons=case["reasons"])
    data = by_function.read_bytes()
    _check_golden(name, data)
    by_job = tmp_path / "job.csv"
    assert export_job(db, "recommendations", by_job, k=case.get("k", 10), run_id=LISTS_RUN,
                      users=case.get("users"), list_name=case["list"],
                      reasons=case["reasons"]) == written
    assert by_job.read_bytes() == data

    rows = _rows(data)
    k = case.get("k", 10)
    wanted = set(case.get("users", users))
    assert len(rows) - 1 == written == k * len(wanted)
    header = (*AGREED_HEADER, "bought_before") + (("reason",) if case["reasons"] else ())
    assert tuple(rows[0]) == header
    assert {r[5] for r in rows[1:]} == {str(LISTS_RUN)}
    assert {r[6] for r in rows[1:]} == {"dynllm + repeat"}
    flags = {r[8] for r in rows[1:]}
    expected_flags = {"buy-again": {"1"}, "discover": {"0"}, "all": {"0", "1"}}[case["list"]]
    assert flags == expected_flags
    if case["reasons"]:
        reasons = [r[9] for r in rows[1:]]
        assert all(reasons) and not any(r.startswith(("=", "+", "-", "@")) for r in reasons)
        if case["list"] == "discover":
            assert all(r.startswith("new to this customer; ") for r in reasons)
        else:
            assert "'=bought 3 times, last 2 days ago" in reasons  # neutralised
            assert all("bought" in r for r in reasons)


def test_lists_and_reasons_of_a_run_stored_before_them_are_refused(golden_workspace, tmp_path):
    """Run 1 has the "all" list only: buy-again, discover and reasons each say so in one
    line, and write nothing; an unknown list names the allowed ones."""
    from dynllm_tui.jobs.export import export_job
    from storage.exports import ExportError

    db, _users = golden_workspace
    out = tmp_path / "out.csv"
    with Workspace.open(db, create=False) as ws:
        for options in ({"list": "discover"}, {"list": "buy-again"}, {"reasons": True}):
            with pytest.raises(ExportError) as caught:
                export_recommendations(ws, out, run_id=1, **options)
            assert str(caught.value) == ("run #1 was stored before buy-again/discover lists "
                                         "and reasons; retrain or replay it")
        with pytest.raises(ExportError, match=r"unknown recommendation list 'nonsense': choose "
                                              r"one of all, buy-again, discover"):
            export_recommendations(ws, out, run_id=LISTS_RUN, list="nonsense")
        assert export_recommendations(ws, out, run_id=1, list="all", k=1) == 3  # still fine
    out.unlink()
    with pytest.raises(ExportError, match="not of facets"):
        export_job(db, "facets", out, list_name="discover")
    with pytest.raises(ExportError, match="unknown recommendation list"):
        export_job(db, "recommendations", out, list_name="Discover")
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left


@pytest.mark.parametrize("name", ["recommendations_run3_discover_reasons.csv",
                                  "recommendations_run3_buy-again_k3_users_reasons.csv"])
def test_console_script_writes_the_list_goldens(golden_workspace, tmp_path, name):
    """`dynllm-tui export recommendations --list L [--reasons]` as a user types it."""
    db, users = golden_workspace
    case = {"what": "recommendations", "run": 3, **_list_cases(users)[name]}
    out = tmp_path / name
    done = subprocess.run([str(_console_script()), *_argv(db, out, case)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    (stamp,) = {r[7] for r in _rows(data)[1:]}
    data = data.replace(b"," + stamp.encode() + b",", b"," + FROZEN_TEXT.encode() + b",")
    assert data == (GOLDEN / name).read_bytes()


def test_console_script_refuses_an_unknown_list(golden_workspace, tmp_path):
    db, _users = golden_workspace
    done = subprocess.run([str(_console_script()), "--db", str(db), "export", "recommendations",
                           str(tmp_path / "x.csv"), "--list", "nonsense"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and not (tmp_path / "x.csv").exists()
    (line,) = done.stderr.strip().splitlines()
    assert "unknown recommendation list 'nonsense'" in line and "buy-again" in line
