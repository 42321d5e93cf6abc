"""Shared fixtures: the real Online Retail file, real workspaces, and a way to prove that a
failed operation left a workspace exactly as it was."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import pytest

from storage.importer import run_import
from storage.presets import preset_spec
from storage.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DYNLLM_SHARED", REPO.parent / "shared"))
ONLINE_RETAIL = SHARED / "data" / "online-retail" / "online_retail.csv.gz"
DEMO_SLICE = REPO / "dynllm_tui" / "data" / "online_retail_demo.csv.gz"


@pytest.fixture(scope="session")
def online_retail_path() -> Path:
    if not ONLINE_RETAIL.exists():
        pytest.fail(f"real data missing: {ONLINE_RETAIL} (set DYNLLM_SHARED to the shared folder)")
    return ONLINE_RETAIL


@pytest.fixture(scope="session")
def full_import(tmp_path_factory, online_retail_path):
    """The whole Online Retail file imported once; tests copy it, never write to it."""
    db = tmp_path_factory.mktemp("full") / "full.db"
    with Workspace.open(db) as ws:
        summary = run_import(ws, preset_spec("online-retail", online_retail_path))
    return db, summary


@pytest.fixture(scope="session")
def demo_workspace_file(tmp_path_factory) -> Path:
    """A workspace holding the shipped demo slice (29,790 real lines, 200 customers)."""
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    with Workspace.open(db) as ws:
        run_import(ws, preset_spec("online-retail", DEMO_SLICE))
    return db


@pytest.fixture
def demo_workspace(tmp_path, demo_workspace_file) -> Path:
    """A private copy of the demo workspace for a test that may write to it."""
    db = tmp_path / "ws.db"
    shutil.copy(demo_workspace_file, db)
    return db


def workspace_fingerprint(db: Path) -> tuple[str, tuple]:
    """The bytes of the workspace file and the content of every table: equal fingerprints mean
    the workspace is exactly as it was."""
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    with Workspace.open(db, create=False) as ws:
        tables = sorted(ws.db.table_names())
        content = tuple(
            (name, ws.conn.execute(f"SELECT count(*), total(rowid) FROM [{name}]").fetchone())
            for name in tables
        )
    # Opening must not have changed the file either.
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    return digest, content


def write_head(source: Path, out: Path, rows: int) -> Path:
    """The header and the first `rows` lines of a gzipped real file, as they are."""
    with gzip.open(source, "rt", encoding="utf-8", newline="") as src, \
            out.open("w", encoding="utf-8", newline="") as dst:
        for n, line in enumerate(src):
            if n > rows:
                break
            dst.write(line)
    return out
