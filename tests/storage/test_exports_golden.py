"""Golden files of both CSV exports: the bytes written by `dynllm-tui export ...` (the installed
console script and `dynllm_tui.cli.main`) and by `storage.exports` are compared with files
checked in under tests/golden/exports/.

The workspace is the real demo slice plus two deterministic runs written here (run 1 active,
run 2 not), with item titles, a customer id and a model name that a spreadsheet would run as a
formula, a title with a comma, quotes and accents, and an item without a title. Each user has
12 stored recommendations, so every export with k <= 10 cuts them short.

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


class _FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):  # the only clock storage.exports reads
        return FROZEN if tz is not None else FROZEN.replace(tzinfo=None)


def _write_runs(db: Path) -> list[str]:
    """Two finished runs over three customers; returns their store ids (sorted)."""
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
                    conn.execute("INSERT INTO recommendations VALUES (?, ?, ?, ?, ?, 0)",
                                 (run, user, rank, item, score))
                for j in range(3 + n):
                    raw = [1.0 + ((j + f + run) % 4) * 0.25 for f in range(4)]
                    weights = [round(w / sum(raw), 7) for w in raw]
                    ts = 1_320_105_600 + j * 7 * 86_400 + n * 3_600
                    conn.executemany("INSERT INTO facet_weights VALUES (?, ?, ?, ?, ?)",
                                     [(run, user, ts, facet, w)
                                      for facet, w in zip(FACETS, weights, strict=True)])
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
        assert tuple(rows[0]) == RECOMMENDATION_COLUMNS
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
        data = data.replace(f",{stamp}\r\n".encode(), f",{FROZEN_TEXT}\r\n".encode())
    assert data == (GOLDEN / name).read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left behind
