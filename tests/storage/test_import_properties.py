"""Property-based test of the importer (issue 10, "Also"): random CSVs of real Online Retail
rows mixed with every reject reason, random cut points and random encodings.

Invariants: rows read = kept + rejected; an uncut, decodable file gets exactly the reasons the
model below predicts, at the first line of each record; a failed import changes nothing;
importing the same file again (as it is, or re-encoded) adds nothing.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import sqlite3
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage.errors import InputError
from storage.importer import run_import
from storage.presets import ONLINE_RETAIL_RULES, preset_spec
from storage.workspace import Workspace
from tests.conftest import DEMO_SLICE, workspace_fingerprint

SEED_ROWS = 10
# kind -> (column index, new cell or None for "keep"), and the reason it must get
MUTATIONS = {
    "cancellation": (0, lambda cell: "C" + cell, "cancellation"),
    "missing_user": (6, lambda cell: "", "missing_user"),
    "missing_item": (1, lambda cell: "", "missing_item"),
    "non_product_item": (1, lambda cell: "POST", "non_product_item"),
    "zero_quantity": (3, lambda cell: "0", "non_positive_quantity"),
    "negative_quantity": (3, lambda cell: "-4", "non_positive_quantity"),
    "inf_quantity": (3, lambda cell: "inf", "non_finite_quantity"),
    "nan_quantity": (3, lambda cell: "NaN", "non_finite_quantity"),
    "huge_quantity": (3, lambda cell: "1e309", "non_finite_quantity"),
    "zero_price": (5, lambda cell: "0", "non_positive_price"),
    "minus_inf_price": (5, lambda cell: "-inf", "non_finite_price"),
    "nan_price": (5, lambda cell: "nan", "non_finite_price"),
    "missing_time": (4, lambda cell: "", "missing_time"),
}
# Kinds that stay purchases: their key is the base row's, so a repeat is a duplicate.
KEPT_KINDS = ("good", "control", "multiline", "accent")
ENCODINGS = ("utf-8", "utf-8-sig", "gzip", "latin-1", "utf-16")


def _base_rows() -> tuple[list[str], list[list[str]]]:
    """Real demo rows that the online-retail preset keeps, ASCII only, distinct keys."""
    with gzip.open(DEMO_SLICE, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        rows, keys = [], set()
        for cells in reader:
            key = (cells[0], cells[1], cells[3], cells[4], cells[5], cells[6])
            if (cells[6] and not cells[0].startswith("C") and float(cells[3]) > 0
                    and float(cells[5]) > 0 and cells[1].upper() not in
                    ONLINE_RETAIL_RULES.non_product_items and "," not in cells[2]
                    and not cells[1].upper().startswith("GIFT_")
                    and all(c.isascii() for c in ",".join(cells)) and key not in keys):
                keys.add(key)
                rows.append(cells)
            if len(rows) == 150:
                return header, rows
    raise AssertionError("the demo slice has fewer usable rows than expected")


HEADER, BASE = _base_rows()


def _csv_text(records: list[list[str]]) -> tuple[str, list[int]]:
    """CSV text and the first line of each record (the header is line 1)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    firsts, line = [], 2
    for cells in records:
        firsts.append(line)
        before = out.tell()
        writer.writerow(cells)
        line += out.getvalue()[before:].count("\n")
    return out.getvalue(), firsts


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(text.encode("utf-8"), mtime=0)
    return text.encode(encoding, errors="replace") if encoding == "latin-1" else \
        text.encode(encoding)


def _decodable(text: str, encoding: str) -> bool:
    return encoding in ("utf-8", "utf-8-sig", "gzip") or (
        encoding == "latin-1" and text.isascii())


row_strategy = st.tuples(
    st.integers(0, len(BASE) - 1),
    st.sampled_from(KEPT_KINDS + tuple(MUTATIONS)),
    st.sampled_from(["\x00", "\x1b", "\x7f", "\x85", "\x07"]),
)


@pytest.fixture(scope="module")
def seeded_workspace(tmp_path_factory) -> Path:
    """A workspace holding the first SEED_ROWS base rows, so duplicates of earlier imports
    occur too."""
    folder = tmp_path_factory.mktemp("seed")
    path = folder / "seed.csv"
    path.write_text(_csv_text(BASE[:SEED_ROWS])[0], encoding="utf-8")
    db = folder / "seed.db"
    with Workspace.open(db) as ws:
        assert run_import(ws, preset_spec("online-retail", path)).rows_kept == SEED_ROWS
    return db


def _counts(db: Path) -> tuple[int, int, int]:
    conn = sqlite3.connect(db)
    try:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("interactions", "users", "items"))
    finally:
        conn.close()


def _import(db: Path, path: Path):
    with Workspace.open(db) as ws:
        return run_import(ws, preset_spec("online-retail", path))


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(row_strategy, min_size=1, max_size=40),
       encoding=st.sampled_from(ENCODINGS),
       cut=st.one_of(st.none(), st.floats(0.0, 1.0)))
def test_import_invariants(seeded_workspace, rows, encoding, cut):
    records, expected, seen = [], [], {i for i in range(SEED_ROWS)}
    for index, kind, control in rows:
        cells = list(BASE[index])
        if kind in MUTATIONS:
            column, change, reason = MUTATIONS[kind]
            cells[column] = change(cells[column])
            expected.append(reason)
        else:
            if kind == "control":
                cells[2] = cells[2][:3] + control + cells[2][3:]
            elif kind == "multiline":
                cells[2] = cells[2] + "\nSECOND LINE\nTHIRD"
            elif kind == "accent":
                cells[2] = cells[2] + " CAFÉ"
            expected.append("duplicate" if index in seen else "kept")
            seen.add(index)
        records.append(cells)
    text, firsts = _csv_text(records)
    data = _encode(text, encoding)
    if cut is not None:
        data = data[: int(len(data) * cut)]

    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "ws.db"
        shutil.copy(seeded_workspace, db)
        path = Path(folder) / ("random.csv.gz" if encoding == "gzip" else "random.csv")
        path.write_bytes(data)
        before, counts = workspace_fingerprint(db), _counts(db)
        try:
            summary = _import(db, path)
        except InputError:
            # A failed import changes nothing; an uncut decodable file must not fail.
            assert workspace_fingerprint(db) == before
            assert cut is not None or not _decodable(text, encoding)
            return
        assert cut is not None or _decodable(text, encoding)
        assert summary.rows_read == summary.rows_kept + summary.rejected_total
        assert _counts(db)[0] == counts[0] + summary.rows_kept
        conn = sqlite3.connect(db)
        stored_rejects = conn.execute(
            "SELECT reason, line, last_line FROM rejects WHERE import_id = ?",
            (summary.import_id,)).fetchall()
        assert sum(last - first + 1 for _, first, last in stored_rejects) \
            == summary.rejected_total
        assert conn.execute(
            "SELECT count(*) FROM items WHERE title GLOB ('*[' || char(0, 7, 27, 127, 133) "
            "|| ']*')").fetchone()[0] == 0
        conn.close()
        if cut is None:
            assert summary.rows_read == len(records)
            assert summary.rows_rejected == dict(Counter(r for r in expected if r != "kept"))
            # Every reject is stored with its reason at the first line of its record (runs of
            # consecutive lines are one stored row).
            assert {n: reason for reason, first, last in stored_rejects
                    for n in range(first, last + 1)} == {
                line: reason for line, reason in zip(firsts, expected, strict=True)
                if reason != "kept"}

        # Importing twice adds nothing: the same bytes, and the same rows re-encoded.
        after = workspace_fingerprint(db)
        again = _import(db, path)
        assert again.already_imported and workspace_fingerprint(db) == after
        if cut is None and encoding != "gzip":
            other = Path(folder) / "again.csv.gz"
            other.write_bytes(_encode(text, "gzip"))
            counts_before = _counts(db)
            assert _import(db, other).rows_kept == 0
            assert _counts(db) == counts_before
