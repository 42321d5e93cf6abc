"""Cells at the edges: non-finite numbers, control characters, records over several lines and
fields of megabytes (issue 10, defects 4, 11, 12). Real Online Retail lines, real workspaces."""

from __future__ import annotations

import gzip
import sqlite3

import pytest

from dynllm_tui.jobs.imports import import_job
from storage.errors import InputError
from storage.sources import MAX_FIELD_BYTES
from tests.conftest import DEMO_SLICE, workspace_fingerprint

HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"


def _real_lines(count: int) -> list[str]:
    """The first `count` data lines of the shipped demo slice (real Online Retail rows)."""
    with gzip.open(DEMO_SLICE, "rt", encoding="utf-8") as fh:
        next(fh)
        return [next(fh) for _ in range(count)]


def _cells(line: str) -> list[str]:
    return line.rstrip("\n").split(",")


def _write(path, rows: list[list[str]] | list[str]) -> None:
    text = "".join(r if isinstance(r, str) else ",".join(r) + "\n" for r in rows)
    path.write_text(HEADER + text, encoding="utf-8")


@pytest.mark.parametrize("column,reason", [(3, "non_finite_quantity"),
                                           (5, "non_finite_price")])
def test_non_finite_numbers_are_rejects_of_their_own(tmp_path, column, reason):
    lines = [ln for ln in _real_lines(80) if len(_cells(ln)) == 8 and _cells(ln)[6]
             and not ln.startswith("C") and _cells(ln)[1] != "POST"][:12]
    bad = ["inf", "-inf", "1e309", "NaN", "nan", "Infinity"]
    rows = []
    for number, line in enumerate(lines):
        cells = _cells(line)
        if number < len(bad):
            cells[column] = bad[number]
        rows.append(cells)
    path = tmp_path / "nonfinite.csv"
    _write(path, rows)
    db = tmp_path / "ws.db"
    summary = import_job(db, path, preset="online-retail")
    assert summary.rows_rejected == {reason: len(bad)}
    assert summary.rows_read == summary.rows_kept + summary.rejected_total == len(lines)
    conn = sqlite3.connect(db)
    # Nothing non-finite reached the table (SQLite stores inf as 9e999; NaN as NULL).
    assert conn.execute(
        "SELECT count(*) FROM interactions WHERE abs(quantity) > 1e308 OR abs(price) > 1e308 "
        "OR abs(value) > 1e308 OR quantity IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT reason, line, last_line FROM rejects").fetchall() == [
        (reason, 2, 7)]


def test_overflowing_derived_value_is_rejected(tmp_path):
    """Finite quantity and price whose product overflows (value = quantity x price)."""
    path = tmp_path / "overflow.csv"
    path.write_text("u,i,t,q,p\na,x,2011-01-01,1e200,1e200\na,y,2011-01-01,2,3\n")
    summary = import_job(tmp_path / "ws.db", path, preset="generic",
                         mapping=["user=u", "item=i", "time=t", "quantity=q", "price=p"])
    assert summary.rows_rejected == {"non_finite_value": 1} and summary.rows_kept == 1


def test_control_characters_are_stripped_from_every_text_cell(tmp_path):
    lines = _real_lines(5)
    rows = [_cells(ln) for ln in lines]
    rows[0][2] = "WHITE\x00 HANGING\x1b HEART\x7f"  # title with NUL, ESC, DEL
    rows[1][7] = "United\x00 Kingdom"  # a user attribute
    rows[2][1] = "\x0071053"  # an item id
    path = tmp_path / "controls.csv"
    _write(path, rows)
    db = tmp_path / "ws.db"
    summary = import_job(db, path, preset="online-retail")
    assert summary.cells_cleaned == 3
    conn = sqlite3.connect(db)
    for table, column in (("items", "title"), ("items", "external_id"), ("items", "text"),
                          ("users", "attributes"), ("users", "external_id")):
        found = conn.execute(
            f"SELECT count(*) FROM {table} WHERE instr({column}, char(0)) > 0 "
            f"OR instr({column}, char(27)) > 0 OR instr({column}, char(127)) > 0").fetchone()[0]
        assert found == 0, (table, column)
    titles = {r[0] for r in conn.execute("SELECT title FROM items")}
    assert "WHITE HANGING HEART" in titles
    # The id without its NUL is the same item as the clean id on line 3.
    assert conn.execute("SELECT count(*) FROM items WHERE external_id = '71053'").fetchone() == (1,)


def test_cli_names_the_stripping(tmp_path, capsys):
    from dynllm_tui.cli import main

    rows = [_cells(ln) for ln in _real_lines(3)]
    rows[0][2] = "LANTERN\x00"
    path = tmp_path / "nul.csv"
    _write(path, rows)
    assert main(["--db", str(tmp_path / "ws.db"), "import", str(path), "--preset",
                 "online-retail"]) == 0
    assert "removed control characters (NUL, ESC, ...) from 1 text cells" in capsys.readouterr().err


def test_multi_line_record_is_reported_at_its_first_line(demo_workspace, tmp_path):
    lines = _real_lines(4)
    rows = [_cells(ln) for ln in lines]
    rows[1][2] = '"A TITLE\nOVER THREE\nLINES"'  # the record of data row 2 spans lines 3-5
    rows[1][4] = "not a time"
    path = tmp_path / "multiline.csv"
    _write(path, rows)
    before = workspace_fingerprint(demo_workspace)
    with pytest.raises(InputError, match=r"multiline\.csv, line 3, column 'InvoiceDate'"):
        import_job(demo_workspace, path, preset="online-retail")
    assert workspace_fingerprint(demo_workspace) == before


def test_multi_line_records_keep_first_lines_for_kept_and_rejected_rows(tmp_path):
    rows = [_cells(ln) for ln in _real_lines(4)]
    rows[1][2] = '"A TITLE\nOVER TWO LINES"'  # lines 3-4
    rows[2][6] = ""  # line 5: missing user
    path = tmp_path / "multiline.csv"
    _write(path, rows)
    db = tmp_path / "ws.db"
    import_job(db, path, preset="online-retail")
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT line FROM interactions ORDER BY line")] == [2, 3, 6]
    assert conn.execute("SELECT reason, line FROM rejects").fetchall() == [("missing_user", 5)]


def test_a_two_megabyte_field_is_read(tmp_path):
    rows = [_cells(ln) for ln in _real_lines(3)]
    rows[1][2] = "X" * 2_200_000
    path = tmp_path / "long.csv"
    _write(path, rows)
    db = tmp_path / "ws.db"
    summary = import_job(db, path, preset="online-retail")
    assert summary.rows_kept == 3
    longest = sqlite3.connect(db).execute("SELECT max(length(title)) FROM items").fetchone()[0]
    assert longest == 2_200_000


def test_a_field_over_the_limit_is_refused_with_line_and_column(demo_workspace, tmp_path):
    rows = [_cells(ln) for ln in _real_lines(3)]
    rows[2][2] = "Y" * (MAX_FIELD_BYTES + 10)
    path = tmp_path / "huge.csv"
    _write(path, rows)
    before = workspace_fingerprint(demo_workspace)
    with pytest.raises(InputError, match=r"huge\.csv, line 4, column 'Description': a field of "
                       r"16\.0 MiB; the limit is 16 MiB per field"):
        import_job(demo_workspace, path, preset="online-retail")
    assert workspace_fingerprint(demo_workspace) == before
