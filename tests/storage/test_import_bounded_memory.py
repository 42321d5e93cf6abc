"""Issue 14.4: the import reads and writes in chunks inside one transaction. Whatever the chunk
size, the workspace (every table, row for row, ids included) and the report are the same; a
failure in a later chunk, or a killed process, leaves nothing; and peak memory does not grow
with the file (the full measurement is bench/scale.py; here a cheap check)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from storage.errors import InputError
from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace
from tests.conftest import workspace_fingerprint, write_head

REPO = Path(__file__).resolve().parents[2]
ONE_CHUNK = 10**9
GENERIC_MAP = ["user=client", "item=sku", "time=when", "title=name", "quantity=n", "price=unit",
               "basket=order", "category=dept", "user.tier=tier", "item.colour=colour"]


def _tables(db: Path) -> dict[str, list]:
    """Every table's rows in rowid order; of `imports`, all but the clock columns."""
    conn = sqlite3.connect(db)
    out = {}
    names = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    for name in sorted(names):
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info([{name}])")
                   if not (name == "imports" and r[1] in ("seconds", "imported_at"))]
        out[name] = conn.execute(
            f"SELECT {', '.join(f'[{c}]' for c in columns)} FROM [{name}] ORDER BY rowid"
        ).fetchall()
    out["indexes"] = sorted(conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall(), key=str)
    conn.close()
    return out


def _import(db: Path, spec, chunk_rows: int) -> tuple[dict, int]:
    """The report (without the clock) and how many chunks the import wrote."""
    chunks = []
    with Workspace.open(db) as ws:
        summary = run_import(ws, spec, chunk_rows=chunk_rows,
                             progress=lambda done, total, phase: chunks.append(phase))
    report = {k: v for k, v in vars(summary).items() if k != "seconds"}
    return report, chunks.count("writing")


@pytest.fixture(scope="module")
def slice20k(tmp_path_factory, online_retail_path) -> Path:
    return write_head(online_retail_path, tmp_path_factory.mktemp("slice") / "slice20k.csv",
                      20_000)


def test_tiny_chunks_give_the_same_workspace_and_report_on_real_lines(tmp_path, slice20k,
                                                                      online_retail_path):
    """20,000 real lines in chunks of 997 rows against one chunk, then a second file that
    overlaps the first (lines 15,001-25,000: 5,000 duplicates of stored rows, found across the
    chunks of the second import and against the workspace)."""
    second = write_head(online_retail_path, tmp_path / "head25k.csv", 25_000)
    lines = second.read_text(encoding="utf-8").splitlines(keepends=True)
    overlap = tmp_path / "overlap.csv"
    overlap.write_text(lines[0] + "".join(lines[15_001:]), encoding="utf-8")
    results = {}
    for chunk_rows in (ONE_CHUNK, 997):
        db = tmp_path / f"ws{chunk_rows}.db"
        first, n_first = _import(db, preset_spec("online-retail", slice20k), chunk_rows)
        again, n_again = _import(db, preset_spec("online-retail", overlap), chunk_rows)
        results[chunk_rows] = (first, again, _tables(db), n_first, n_again)
    one, tiny = results[ONE_CHUNK], results[997]
    assert (one[3], one[4]) == (1, 1) and (tiny[3], tiny[4]) == (21, 11)
    assert tiny[0] == one[0] and tiny[1] == one[1]
    assert tiny[2] == one[2]
    assert one[0]["rows_read"] == 20_000 and one[0]["rows_kept"] == 12_748
    assert one[0]["rows_rejected"]["duplicate"] == 314
    # Every row the first import kept from the 5,000 shared lines is a duplicate the second time.
    shared_kept = sqlite3.connect(tmp_path / f"ws{ONE_CHUNK}.db").execute(
        "SELECT count(*) FROM interactions WHERE import_id = 1 AND line >= 15002").fetchone()[0]
    assert one[1]["rows_rejected"]["duplicate"] >= shared_kept > 2_000
    interactions = one[2]["interactions"]
    assert len(interactions) == one[0]["rows_kept"] + one[1]["rows_kept"]


def _generic_file(path: Path) -> Path:
    """A generic CSV that exercises every cross-chunk state: duplicates far apart, a title that
    only an early row has, an item whose latest row comes late, attributes from the latest row,
    reject runs that cross chunk boundaries, control characters, a quoted line break (rows are
    then not one per line) and a blank line."""
    header = "order,client,sku,when,n,unit,name,dept,tier,colour"
    rows = []
    for i in range(60):
        # A missing user now and then, and a run of four (rows 25-28) across chunk boundaries.
        user = f"u{i % 7}" if i % 11 and not 25 <= i <= 28 else ""
        sku = f"S{i % 9}"
        name = f"Thing {i % 9}" if i < 20 else ""  # titles only early: the titled row wins
        when = f"2011-03-{1 + i % 28:02d} 10:{i % 60:02d}:00"
        tier = "gold" if i > 40 else "basic"
        rows.append(f"B{i // 3},{user},{sku},{when},{1 + i % 4},{1.5 + i % 5},{name},"
                    f"D{i % 3},{tier},c{i}")
    rows[5] = rows[5].replace("Thing 5", '"Thing\n five"')  # a record over two lines
    rows[8] = rows[8].replace("Thing 8", "Thing\x1b 8")  # a control character, stripped
    rows += [rows[2], rows[30], rows[47]]  # exact duplicates, in later chunks
    rows += ["B99,u1,S1,2011-03-09 10:00:00,-2,1.5,,D1,basic,c",  # a non-positive quantity
             "B99,u1,S1,2011-03-09 10:00:00,2,nan,,D1,basic,c"]  # a non-finite price
    rows.insert(40, "")  # a blank line is not a row
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_tiny_chunks_give_the_same_workspace_and_report_on_a_generic_csv(tmp_path):
    path = _generic_file(tmp_path / "orders.csv")
    results = {}
    for chunk_rows in (ONE_CHUNK, 4, 1):
        db = tmp_path / f"ws{chunk_rows}.db"
        report, chunks = _import(db, preset_spec("generic", path, mapping=GENERIC_MAP),
                                 chunk_rows)
        results[chunk_rows] = (report, _tables(db), chunks)
    # Two passes each: the first finds at its end that rows are not one per line (the quoted
    # line break, the blank line), the second numbers them exactly.
    assert results[4][2] == 2 * 17 and results[1][2] == 2 * 65
    for chunk_rows in (4, 1):
        assert results[chunk_rows][0] == results[ONE_CHUNK][0]
        assert results[chunk_rows][1] == results[ONE_CHUNK][1]
    report, tables = results[ONE_CHUNK][0], results[ONE_CHUNK][1]
    assert report["rows_read"] == 65 and report["cells_cleaned"] == 1
    assert report["rows_rejected"] == {"missing_user": 10, "non_positive_quantity": 1,
                                       "non_finite_price": 1, "duplicate": 3}
    conn = sqlite3.connect(tmp_path / f"ws{ONE_CHUNK}.db")
    # Lines are exact after the two-line record and the blank line: B19 is rows 57-59.
    assert [r[0] for r in conn.execute(
        "SELECT line FROM interactions WHERE basket = 'B19' ORDER BY line")] == [61, 62, 63]
    # S5's latest row (row 59) has no title: the title is its latest titled row's (row 14).
    assert conn.execute("SELECT title FROM items WHERE external_id = 'S5'").fetchone() == (
        "Thing 5",)
    assert json.loads(conn.execute(
        "SELECT attributes FROM users WHERE external_id = 'u1'").fetchone()[0]) == {
        "tier": "gold"}
    assert conn.execute("SELECT reason, line, last_line FROM rejects WHERE last_line > line"
                        ).fetchall() == [("missing_user", 28, 31), ("duplicate", 64, 66)]
    assert len(tables["rejects"]) == 6 + 1 + 1 + 2


def _bad_quantity_at(source: Path, out: Path, line: int, multiline_before: int | None) -> Path:
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    fields = lines[line - 1].split(",")
    fields[3] = "abc"  # Quantity
    lines[line - 1] = ",".join(fields)
    if multiline_before is not None:
        fields = lines[multiline_before - 1].split(",")
        fields[2] = f'"{fields[2]}\nCONTINUED"'
        lines[multiline_before - 1] = ",".join(fields)
    out.write_text("".join(lines), encoding="utf-8")
    return out


@pytest.mark.parametrize("multiline_before", [None, 500])
def test_a_bad_cell_in_a_later_chunk_leaves_the_workspace_unchanged(
        tmp_path, slice20k, demo_workspace, multiline_before):
    """The 15,000th line is bad; with chunks of 1,000 rows, fourteen chunks are staged first.
    With a two-line record earlier, the line named is still the true one (15,001)."""
    bad = _bad_quantity_at(slice20k, tmp_path / "bad.csv", 15_000, multiline_before)
    before = workspace_fingerprint(demo_workspace)
    chunks = []
    with Workspace.open(demo_workspace) as ws, pytest.raises(InputError) as caught:
        run_import(ws, preset_spec("online-retail", bad), chunk_rows=1_000,
                   progress=lambda done, total, phase: chunks.append(phase))
    true_line = 15_000 if multiline_before is None else 15_001
    assert str(caught.value) == f"{bad}, line {true_line}, column 'Quantity': not a number: 'abc'"
    assert chunks.count("writing") >= 14
    assert workspace_fingerprint(demo_workspace) == before


KILL_AT_CHUNK = r"""
import os, signal, sys
from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace

db, path = sys.argv[1], sys.argv[2]
seen = []

def progress(done, total, phase):
    if phase == "writing":
        seen.append(done)
        if len(seen) == 8:  # seven chunks staged, the eighth checked: killed without warning
            os.kill(os.getpid(), signal.SIGKILL)

with Workspace.open(db) as ws:
    run_import(ws, preset_spec("online-retail", path), chunk_rows=1_000, progress=progress)
"""


def test_a_killed_import_leaves_the_workspace_unchanged(tmp_path, slice20k, demo_workspace):
    before = workspace_fingerprint(demo_workspace)
    done = subprocess.run([sys.executable, "-c", KILL_AT_CHUNK, str(demo_workspace),
                           str(slice20k)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert workspace_fingerprint(demo_workspace) == before
    # And the next import of the same file goes through completely.
    with Workspace.open(demo_workspace) as ws:
        summary = run_import(ws, preset_spec("online-retail", slice20k))
    assert summary.rows_read == 20_000 and not summary.already_imported


PEAK = r"""
import resource, sys
import sqlite_utils  # loaded by the first migration: not part of the import's own growth
from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace

with Workspace.open(sys.argv[1]) as ws:
    run_import(ws, preset_spec("online-retail", sys.argv[2]), chunk_rows=int(sys.argv[3]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def _copies(source: Path, out: Path, k: int) -> Path:
    """`source` k times, each copy with its own customers and invoices (no duplicates)."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    parts = [lines[0]]
    for copy in range(k):
        for line in lines[1:]:
            f = line.split(",")
            f[0] = f"{copy}{f[0]}" if not f[0].startswith("C") else f"C{copy}{f[0][1:]}"
            f[-2] = f"{copy}{f[-2]}" if f[-2] else ""
            parts.append(",".join(f))
    out.write_text("".join(parts), encoding="utf-8")
    return out


def test_peak_memory_does_not_grow_with_the_file(tmp_path, slice20k):
    """Peak RSS of an import of 20k lines and of 4x as many (80k), in chunks of 5,000 rows: the
    4x file may cost at most 16 MB more (measured +8: the page cache of a 4x bigger workspace,
    the keys seen, 16 bytes a row, the user statistics). The import before issue 14 grew by
    48 MB here (165 -> 213 MB); bench/scale.py has the full-size figures."""
    big = _copies(slice20k, tmp_path / "x4.csv", 4)
    peaks = []
    for path in (slice20k, big):
        done = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path / f"{path.stem}.db"),
                               str(path), "5000"], cwd=REPO, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        peaks.append(int(done.stdout.split()[-1]))
    assert peaks[1] - peaks[0] <= 16, peaks
