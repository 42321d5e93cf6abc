"""Two imports at once into one workspace, as real processes (issue 10, defect 1).

Before the fix the "already imported" look-up and the duplicate-key read ran before the write
lock, so two imports of one file both wrote and every interaction was stored twice. Each test
repeats the race several times, because a race that loses 4 times in 5 can still pass once.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAIRS = 6


@pytest.fixture(scope="module")
def slices(tmp_path_factory, online_retail_path) -> dict[str, Path]:
    """Real Online Retail lines: 5,000 rows, and two files overlapping on 1,000 rows."""
    folder = tmp_path_factory.mktemp("slices")
    with gzip.open(online_retail_path, "rt", encoding="utf-8", newline="") as fh:
        lines = [next(fh) for _ in range(5001)]
    header, body = lines[0], lines[1:]
    out = {"whole": body, "first": body[:3000], "second": body[2000:]}
    paths = {}
    for name, rows in out.items():
        paths[name] = folder / f"{name}.csv"
        paths[name].write_text(header + "".join(rows), encoding="utf-8", newline="")
    return paths


def _start(db: Path, path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dynllm_tui.cli", "--db", str(db), "import", str(path),
         "--preset", "online-retail", "--json"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out)


def _counts(db: Path) -> dict[str, object]:
    conn = sqlite3.connect(db)
    try:
        return {
            "interactions": conn.execute("SELECT count(*) FROM interactions").fetchone()[0],
            "users": conn.execute("SELECT count(*) FROM users").fetchone()[0],
            "items": conn.execute("SELECT count(*) FROM items").fetchone()[0],
            "imports": conn.execute("SELECT count(*) FROM imports").fetchone()[0],
            "hashes": conn.execute("SELECT count(DISTINCT sha256) FROM imports").fetchone()[0],
            "repeated_keys": conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM interactions GROUP BY user_id, item_id, "
                "ts, quantity, price, basket HAVING count(*) > 1)").fetchone()[0],
            "duplicate_rejects": conn.execute(
                "SELECT coalesce(sum(last_line - line + 1), 0) FROM rejects "
                "WHERE reason = 'duplicate'").fetchone()[0],
        }
    finally:
        conn.close()


def _sequential(db: Path, *paths: Path) -> dict[str, object]:
    for path in paths:
        _finish(_start(db, path))
    return _counts(db)


def test_the_same_file_twice_at_once_is_stored_once(tmp_path, slices):
    expected = _sequential(tmp_path / "reference.db", slices["whole"])
    assert expected["interactions"] > 3000 and expected["imports"] == 1
    for attempt in range(PAIRS):
        db = tmp_path / f"race{attempt}.db"  # a fresh file: the two also race to create it
        first, second = _start(db, slices["whole"]), _start(db, slices["whole"])
        summaries = [_finish(first), _finish(second)]
        assert _counts(db) == expected, f"attempt {attempt}"
        # Exactly one of the two wrote; the other waited and found it.
        assert sorted(s["already_imported"] for s in summaries) == [False, True]
        assert summaries[0]["import_id"] == summaries[1]["import_id"] == 1


def test_overlapping_files_at_once_keep_no_duplicates(tmp_path, slices):
    expected = _sequential(tmp_path / "reference.db", slices["first"], slices["second"])
    assert expected["repeated_keys"] == 0 and expected["duplicate_rejects"] > 400
    for attempt in range(3):
        db = tmp_path / f"race{attempt}.db"
        first, second = _start(db, slices["first"]), _start(db, slices["second"])
        _finish(first), _finish(second)
        assert _counts(db) == expected, f"attempt {attempt}"
