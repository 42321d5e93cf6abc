"""Bad input gets one clear message naming what and where, and leaves the workspace as it was."""

from __future__ import annotations

import gzip
import sqlite3

import pytest

from dynllm_tui.jobs.imports import import_job
from storage.errors import InputError, WorkspaceError
from storage.schema import SCHEMA_VERSION
from storage.workspace import Workspace
from tests.conftest import DEMO_SLICE, workspace_fingerprint

GENERIC = ["user=customer", "item=sku", "time=ts"]
HEADER = "customer,sku,ts,qty\n"


def _fails(db, path, match, **kwargs):
    """Import must raise InputError matching `match` and leave `db` unchanged."""
    before = workspace_fingerprint(db)
    kwargs.setdefault("preset", "generic")
    if kwargs["preset"] == "generic":
        kwargs.setdefault("mapping", GENERIC)
    with pytest.raises(InputError, match=match) as info:
        import_job(db, path, **kwargs)
    assert workspace_fingerprint(db) == before
    return str(info.value)


def test_missing_file(demo_workspace, tmp_path):
    message = _fails(demo_workspace, tmp_path / "nope.csv", "no such file")
    assert "nope.csv" in message


def test_empty_file(demo_workspace, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    _fails(demo_workspace, empty, r"empty\.csv: the file is empty")


def test_header_only_file(demo_workspace, tmp_path):
    path = tmp_path / "header.csv"
    path.write_text(HEADER)
    _fails(demo_workspace, path, "no data rows")


def test_missing_mapped_column_names_it_and_the_columns_found(demo_workspace, tmp_path):
    path = tmp_path / "nots.csv"
    path.write_text("customer,sku,when\n1,A,2011-01-01\n")
    message = _fails(demo_workspace, path, r"no column 'ts'")
    assert "columns found: customer, sku, when" in message


def test_online_retail_preset_on_a_file_missing_a_required_column(demo_workspace, tmp_path):
    path = tmp_path / "retail.csv"
    path.write_text("InvoiceNo,StockCode,Description,Quantity,UnitPrice,CustomerID,Country\n"
                    "1,A,x,1,1.0,5,UK\n")
    message = _fails(demo_workspace, path, r"no column 'InvoiceDate'", preset="online-retail")
    assert "columns found: InvoiceNo, StockCode" in message


def test_row_with_wrong_number_of_fields_names_the_line(demo_workspace, tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text(HEADER + "1,A,2011-01-01,2\n2,B,2011-01-02,1,EXTRA\n")
    _fails(demo_workspace, path, r"ragged\.csv, line 3: expected 4 fields, found 5")


def test_unparseable_time_names_line_and_value(demo_workspace, tmp_path):
    path = tmp_path / "time.csv"
    path.write_text(HEADER + "1,A,2011-01-01,2\n2,B,yesterday-ish,1\n")
    message = _fails(demo_workspace, path, r"time\.csv, line 3, column 'ts'")
    assert "'yesterday-ish'" in message


def test_time_not_matching_an_explicit_format(demo_workspace, tmp_path):
    path = tmp_path / "fmt.csv"
    path.write_text(HEADER + "1,A,01/02/2011 10:00,2\n2,B,2011-01-02,1\n")
    _fails(demo_workspace, path, r"line 3, column 'ts': cannot read '2011-01-02' as the format",
           time_format="%d/%m/%Y %H:%M")


def test_non_utf8_bytes_name_the_line(demo_workspace, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "1,A,2011-01-01,2\n2,").encode() + "CAFÉ".encode("latin-1")
                     + b",2011-01-02,1\n")
    _fails(demo_workspace, path, r"latin1\.csv, line 3: not UTF-8")


def test_truncated_gzip(demo_workspace, tmp_path):
    whole = DEMO_SLICE.read_bytes()
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    _fails(demo_workspace, path, r"cut\.csv\.gz(, line \d+)?: the gzip stream is truncated",
           preset="online-retail")


def test_parquet_that_is_not_parquet(demo_workspace, tmp_path):
    path = tmp_path / "fake.parquet"
    path.write_text(HEADER + "1,A,2011-01-01,2\n")
    _fails(demo_workspace, path, r"fake\.parquet: not a Parquet file")


def test_map_naming_an_unknown_field(demo_workspace, tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text(HEADER + "1,A,2011-01-01,2\n")
    _fails(demo_workspace, path, r"unknown field 'colour'", mapping=[*GENERIC, "colour=qty"])


def test_map_naming_a_column_that_does_not_exist(demo_workspace, tmp_path):
    path = tmp_path / "ok.csv"
    path.write_text(HEADER + "1,A,2011-01-01,2\n")
    message = _fails(demo_workspace, path, r"no column 'quantity'",
                     mapping=[*GENERIC, "quantity=quantity"])
    assert "columns found: customer, sku, ts, qty" in message


def test_number_that_is_not_a_number(demo_workspace, tmp_path):
    path = tmp_path / "qty.csv"
    path.write_text(HEADER + "1,A,2011-01-01,2\n2,B,2011-01-02,two\n")
    _fails(demo_workspace, path, r"line 3, column 'qty': not a number: 'two'",
           mapping=[*GENERIC, "quantity=qty"])


def test_workspace_that_is_not_sqlite(tmp_path):
    db = tmp_path / "notes.db"
    db.write_text("these are my notes, not a database\n" * 10)
    before = db.read_bytes()
    with pytest.raises(WorkspaceError, match=r"notes\.db: not an SQLite database"):
        import_job(db, DEMO_SLICE, preset="online-retail")
    assert db.read_bytes() == before


def test_workspace_from_a_newer_schema(demo_workspace):
    conn = sqlite3.connect(demo_workspace)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = demo_workspace.read_bytes()
    with pytest.raises(WorkspaceError, match=rf"schema version {SCHEMA_VERSION + 1} is newer"):
        import_job(demo_workspace, DEMO_SLICE, preset="online-retail")
    assert demo_workspace.read_bytes() == before


def test_sqlite_file_of_another_application(tmp_path):
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    before = db.read_bytes()
    with pytest.raises(WorkspaceError, match="not a dynllm-tui workspace"):
        Workspace.open(db)
    assert db.read_bytes() == before


def test_gzip_that_is_not_gzip_inside(demo_workspace, tmp_path):
    path = tmp_path / "bad.csv.gz"
    raw = bytearray(gzip.compress((HEADER + "1,A,2011-01-01,2\n" * 1000).encode()))
    raw[20:40] = b"\x00" * 20  # damage the deflate stream after the header
    path.write_bytes(bytes(raw))
    _fails(demo_workspace, path, r"bad\.csv\.gz(, line \d+)?: corrupt gzip data")


def test_a_file_the_user_may_not_read_is_one_line():
    """As an ordinary user (root reads anything, so the test drops to uid 65534 when it is
    root): a file without read permission, and one inside a folder that cannot be searched."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from tests.conftest import REPO

    tmp_path = Path(tempfile.mkdtemp(prefix="dynllm-perm-", dir="/tmp"))
    secret = tmp_path / "locked"
    secret.mkdir()
    data = secret / "orders.csv"
    data.write_text("user,item,time\n1,2,2020-01-01\n")
    unreadable = tmp_path / "unreadable.csv"
    unreadable.write_text("user,item,time\n1,2,2020-01-01\n")
    os.chmod(unreadable, 0o200)
    os.chmod(secret, 0o600)
    os.chmod(tmp_path, 0o777)
    prefix = (["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
              if os.geteuid() == 0 else [])
    try:
        for path, says in ((unreadable, "may not read the file"),
                           (data, "cannot be searched")):
            proc = subprocess.run(
                [*prefix, sys.executable, "-m", "dynllm_tui.cli", "--db",
                 str(tmp_path / "ws.db"), "import", str(path), "--map", "user=user",
                 "--map", "item=item", "--map", "time=time"],
                cwd=REPO, capture_output=True, text=True, timeout=120,
                env={**os.environ, "HOME": str(tmp_path)})
            assert proc.returncode == 2, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and says in lines[0] and str(path) in lines[0], lines
        assert not (tmp_path / "ws.db").exists()  # refused before any workspace was made
    finally:
        os.chmod(secret, 0o755)
        shutil.rmtree(tmp_path)
