"""The real Online Retail file, imported in full: every one of its 541,909 rows is accounted for."""

from __future__ import annotations

import gzip
import shutil
from collections import Counter

import numpy as np
import pytest

from storage.importer import run_import
from storage.presets import preset_spec
from storage.queries import rejected_lines, workspace_status
from storage.workspace import Workspace

ROWS_IN_FILE = 541_909


def test_every_row_is_accounted_for(full_import):
    db, summary = full_import
    assert summary.rows_read == ROWS_IN_FILE
    assert summary.rows_kept + summary.rejected_total == ROWS_IN_FILE
    for reason in ("cancellation", "missing_user", "non_product_item", "non_positive_price",
                   "duplicate"):
        assert summary.rows_rejected.get(reason, 0) > 0, reason
    # SOURCE.md: 135,080 lines without a customer (some are also cancellations or fees), 9,288
    # cancellations, "a few thousand" duplicates, about 391k purchase lines after dropping those.
    assert summary.rows_rejected["cancellation"] == 9_288
    assert 130_000 < summary.rows_rejected["missing_user"] <= 135_080
    assert 1_000 < summary.rows_rejected["duplicate"] < 10_000
    assert 385_000 < summary.rows_kept < 395_000
    assert 4_200 < summary.users_total < 4_400
    assert 3_500 < summary.items_total < 3_800

    with Workspace.open(db, create=False) as ws:
        kept_lines = np.array([r[0] for r in ws.conn.execute("SELECT line FROM interactions")])
        rejected = rejected_lines(ws, summary.import_id)
        reject_lines = np.array(list(rejected))
        by_reason = dict(Counter(rejected.values()))
        status = workspace_status(ws)
    # Each data line (2 .. 541,910; line 1 is the header) is either an interaction or a reject.
    every = np.sort(np.concatenate([kept_lines, reject_lines]))
    assert np.array_equal(every, np.arange(2, ROWS_IN_FILE + 2))
    assert by_reason == summary.rows_rejected
    assert status["interactions"] == summary.rows_kept
    assert status["imports"][0]["rows_read"] == ROWS_IN_FILE


def test_rows_are_parsed_as_in_the_file(full_import):
    db, _ = full_import
    with Workspace.open(db, create=False) as ws:
        first = ws.conn.execute(
            "SELECT u.external_id, u.attributes, i.external_id, x.ts, x.quantity, x.price, "
            "x.value, x.basket, x.line FROM interactions x JOIN users u ON u.id = x.user_id "
            "JOIN items i ON i.id = x.item_id ORDER BY x.line LIMIT 1"
        ).fetchone()
        # The title is the most recent description of the stock code.
        title = ws.conn.execute("SELECT title FROM items WHERE external_id = '85123A'").fetchone()
        post = ws.conn.execute(
            "SELECT count(*) FROM items WHERE external_id IN ('POST', 'DOT', 'M', 'BANK CHARGES')"
        ).fetchone()[0]
        raw = ws.conn.execute("SELECT raw FROM rejects WHERE line = 47").fetchone()[0]
    # Line 2: 536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0
    assert first[0] == "17850"  # the float-looking "17850.0" is an id, not a number
    assert '"country": "United Kingdom"' in first[1]
    assert first[2:8] == ("85123A", 1291191960, 6.0, 2.55, pytest.approx(15.3), "536365")
    assert first[8] == 2
    assert title[0] == "CREAM HANGING HEART T-LIGHT HOLDER"
    assert post == 0
    assert raw.startswith("536370,POST,POSTAGE")


def test_reimport_adds_nothing(tmp_path, full_import, online_retail_path):
    db, summary = full_import
    copy = tmp_path / "again.db"
    shutil.copy(db, copy)
    with Workspace.open(copy) as ws:
        again = run_import(ws, preset_spec("online-retail", online_retail_path))
        counts = ws.conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
        imports = ws.conn.execute("SELECT count(*) FROM imports").fetchone()[0]
    assert again.already_imported
    assert again.import_id == summary.import_id
    assert counts == summary.rows_kept
    assert imports == 1


def _write_lines(path, header, lines):
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        fh.write(header)
        fh.writelines(lines)


def test_two_slices_append_to_the_same_result_as_the_whole(tmp_path, full_import,
                                                          online_retail_path):
    """First half of the lines, then the second half: the same interactions, users and items
    as the full import (duplicates that straddle the cut are caught across imports)."""
    _, whole = full_import
    with gzip.open(online_retail_path, "rt", encoding="utf-8", newline="") as fh:
        header, *lines = fh.readlines()
    cut = len(lines) // 2
    first, second = tmp_path / "first.csv.gz", tmp_path / "second.csv.gz"
    _write_lines(first, header, lines[:cut])
    _write_lines(second, header, lines[cut:])
    with Workspace.open(tmp_path / "halves.db") as ws:
        a = run_import(ws, preset_spec("online-retail", first))
        b = run_import(ws, preset_spec("online-retail", second))
        interactions = ws.conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
        imports = ws.conn.execute("SELECT count(*) FROM imports").fetchone()[0]
    assert (a.rows_read, b.rows_read) == (cut, len(lines) - cut)
    assert a.rows_kept + b.rows_kept == whole.rows_kept == interactions
    assert b.users_total == whole.users_total and b.items_total == whole.items_total
    assert imports == 2


def test_a_slice_of_an_imported_file_adds_only_duplicates(tmp_path, full_import,
                                                         online_retail_path):
    db, whole = full_import
    copy = tmp_path / "slice.db"
    shutil.copy(db, copy)
    with gzip.open(online_retail_path, "rt", encoding="utf-8", newline="") as fh:
        header = fh.readline()
        lines = [fh.readline() for _ in range(2_000)]
    part = tmp_path / "part.csv.gz"
    _write_lines(part, header, lines)
    with Workspace.open(copy) as ws:
        summary = run_import(ws, preset_spec("online-retail", part))
        interactions = ws.conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
    assert summary.rows_read == 2_000 and summary.rows_kept == 0
    assert summary.rows_rejected["duplicate"] > 1_000
    assert interactions == whole.rows_kept
