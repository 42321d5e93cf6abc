"""The workspace file: location, WAL mode, schema version, migrations, atomic jobs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from storage.errors import ImportCancelled
from storage.importer import run_import
from storage.presets import preset_spec
from storage.schema import APPLICATION_ID, SCHEMA_VERSION
from storage.workspace import Workspace, default_workspace_path
from tests.conftest import DEMO_SLICE, REPO, workspace_fingerprint


def test_new_workspace_has_schema_wal_and_tables(tmp_path):
    with Workspace.open(tmp_path / "sub" / "new.db") as ws:
        assert ws.schema_version == SCHEMA_VERSION
        assert ws.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ws.conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert {"imports", "rejects", "users", "items", "interactions"} <= set(ws.db.table_names())
        assert ws.checkpoint_dir == tmp_path / "sub" / "new.checkpoints"


def test_open_without_create_refuses_a_missing_workspace(tmp_path):
    from storage.errors import WorkspaceError

    with pytest.raises(WorkspaceError, match="no workspace"):
        Workspace.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_dynllm_db_selects_the_default_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNLLM_DB", str(tmp_path / "env.db"))
    assert default_workspace_path() == tmp_path / "env.db"
    monkeypatch.delenv("DYNLLM_DB")
    assert default_workspace_path().name == "workspace.db"


def test_migrating_an_older_workspace_keeps_its_data(tmp_path):
    """A version-0 file (an empty SQLite database) is migrated forward in one transaction."""
    import sqlite3

    db = tmp_path / "old.db"
    sqlite3.connect(db).close()
    with Workspace.open(db) as ws:
        assert ws.schema_version == SCHEMA_VERSION


def test_cancel_rolls_back_everything(demo_workspace, online_retail_path):
    before = workspace_fingerprint(demo_workspace)
    seen = []

    def cancel_after_first_chunk() -> bool:
        seen.append(1)
        return len(seen) > 1

    spec = preset_spec("online-retail", online_retail_path)
    with Workspace.open(demo_workspace) as ws, pytest.raises(ImportCancelled):
        run_import(ws, spec, should_cancel=cancel_after_first_chunk)
    assert len(seen) >= 2
    assert workspace_fingerprint(demo_workspace) == before


def test_a_killed_import_leaves_the_workspace_as_it_was(demo_workspace, online_retail_path):
    """kill -9 in the middle of writing rows: SQLite's journal makes the import all-or-nothing."""
    before = workspace_fingerprint(demo_workspace)
    script = textwrap.dedent(f"""
        import os, signal
        from storage.importer import run_import
        from storage.presets import preset_spec
        from storage.workspace import Workspace

        def progress(done, total, phase):
            if phase == "writing" and done >= 200_000:
                print("killing", done, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

        with Workspace.open({str(demo_workspace)!r}) as ws:
            run_import(ws, preset_spec("online-retail", {str(online_retail_path)!r}), progress)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "killing" in proc.stdout
    # The WAL left behind holds only uncommitted frames; opening recovers to the old state.
    assert os.path.exists(f"{demo_workspace}-wal")
    with Workspace.open(demo_workspace) as ws:
        assert ws.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert ws.conn.execute("SELECT count(*) FROM imports").fetchone()[0] == 1
    assert workspace_fingerprint(demo_workspace)[1] == before[1]
    # And the same import then runs to the end.
    with Workspace.open(demo_workspace) as ws:
        summary = run_import(ws, preset_spec("online-retail", online_retail_path))
    assert summary.rows_read == 541_909 and not summary.already_imported


def test_demo_slice_import_counts(demo_workspace_file):
    with Workspace.open(demo_workspace_file, create=False) as ws:
        read, kept = ws.conn.execute("SELECT rows_read, rows_kept FROM imports").fetchone()
        users = ws.conn.execute("SELECT count(*) FROM users").fetchone()[0]
    assert read == 29_790 and users == 200 and 27_000 < kept < read
    assert DEMO_SLICE.with_name("SOURCE.md").read_text().count("CC BY 4.0") == 1


def test_a_version_1_workspace_is_migrated_forward_with_its_data(tmp_path):
    """Build a workspace exactly as release 1 did, import into it, then open it today."""
    import sqlite3

    import sqlite_utils

    from storage.schema import MIGRATIONS

    db = tmp_path / "v1.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    MIGRATIONS[0](sqlite_utils.Database(conn))
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    v1 = Workspace(db, conn)  # as release 1 left it: no later tables
    summary = run_import(v1, preset_spec("online-retail", DEMO_SLICE))
    assert "profiles" not in v1.db.table_names()
    v1.close()
    with Workspace.open(db) as ws:
        assert ws.schema_version == SCHEMA_VERSION
        assert {"profiles", "embeddings", "runs", "recommendations", "facet_weights",
                "memory_trace"} <= set(ws.db.table_names())
        kept = ws.conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
        imports = ws.conn.execute("SELECT rows_read FROM imports").fetchall()
    assert kept == summary.rows_kept and imports == [(29_790,)]


def test_many_openers_of_a_new_workspace_at_once(tmp_path):
    """The app's reader and a job may create the same new file at the same moment: each must
    see one migrated workspace, none 'table already exists'."""
    import threading

    path = tmp_path / "new.db"
    errors, barrier = [], threading.Barrier(6)

    def opener() -> None:
        barrier.wait()
        try:
            Workspace.open(path).close()
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Workspace.open(path, create=False) as ws:
        assert ws.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def _release_3_workspace(db) -> list[tuple]:
    """A workspace as release 3 left it: the demo slice, one finished run and its facet weights
    in the four wide columns, written with the SQL of that release. Returns the wide rows."""
    import sqlite3

    import sqlite_utils

    from storage.schema import MIGRATIONS

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for migration in MIGRATIONS[:3]:
        migration(sqlite_utils.Database(conn))
    # The table exactly as version 3 created it, whatever becomes of the migration code.
    conn.execute("DROP TABLE facet_weights")
    conn.execute(
        'CREATE TABLE "facet_weights" ("run_id" INTEGER REFERENCES "runs"("id"), '
        '"user_id" INTEGER REFERENCES "users"("id"), "ts" INTEGER, "crowd_segment" FLOAT, '
        '"interests" FLOAT, "categories" FLOAT, "brands" FLOAT)')
    conn.execute('CREATE INDEX "idx_facet_weights_run_id_user_id_ts" '
                 'ON "facet_weights" ("run_id", "user_id", "ts")')
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 3")
    v3 = Workspace(db, conn)
    run_import(v3, preset_spec("online-retail", DEMO_SLICE))
    wide = []
    with v3.transaction():
        conn.execute("INSERT INTO runs (id, created_at, finished_at, status, config, active) "
                     "VALUES (1, '2026-01-05T10:00:00+00:00', '2026-01-05T10:12:00+00:00', "
                     "'done', '{\"model_name\": \"dynllm\"}', 1)")
        # The replay stored one row per basket of each user: the real basket times of the
        # three most active customers, with softmax-like weights summing to one.
        users = [u for (u,) in conn.execute(
            "SELECT user_id FROM interactions GROUP BY user_id ORDER BY count(*) DESC LIMIT 3")]
        for n, user in enumerate(users):
            times = [t for (t,) in conn.execute(
                "SELECT DISTINCT ts FROM interactions WHERE user_id = ? ORDER BY ts", (user,))]
            for j, ts in enumerate(times):
                raw = [1.0 + ((j + f + n) % 5) * 0.37 for f in range(4)]
                wide.append((1, user, ts, *(w / sum(raw) for w in raw)))
        conn.executemany("INSERT INTO facet_weights VALUES (?, ?, ?, ?, ?, ?, ?)", wide)
    v3.close()
    return wide


def test_a_version_3_workspace_gets_facet_weights_in_long_form(tmp_path):
    """Each wide row (run, user, ts, four weights) becomes four rows (run, user, ts, facet,
    weight) in the old column order; nothing else changes; reads and exports see the same."""
    from storage.browse import user_facet_weights
    from storage.exports import export_facet_weights

    db = tmp_path / "v3.db"
    wide = _release_3_workspace(db)
    assert len(wide) > 100
    old_facets = ("crowd_segment", "interests", "categories", "brands")
    with Workspace.open(db) as ws:
        assert ws.schema_version == SCHEMA_VERSION >= 4
        columns = [c[1] for c in ws.conn.execute("PRAGMA table_info(facet_weights)")]
        assert columns == ["run_id", "user_id", "ts", "facet", "weight"]
        assert "facet_weights_v3" not in ws.db.table_names()
        indexes = {tuple(c[2] for c in ws.conn.execute(f"PRAGMA index_info([{name}])"))
                   for _seq, name, *_ in ws.conn.execute("PRAGMA index_list(facet_weights)")}
        assert ("run_id", "user_id", "ts") in indexes
        plan = " ".join(r[3] for r in ws.conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM facet_weights WHERE run_id = 1 AND user_id = 2"))
        assert "USING INDEX" in plan
        long = ws.conn.execute(
            "SELECT run_id, user_id, ts, facet, weight FROM facet_weights ORDER BY rowid"
        ).fetchall()
        expected = [(run, user, ts, facet, w) for run, user, ts, *weights in wide
                    for facet, w in zip(old_facets, weights, strict=True)]
        assert long == expected
        user = wide[0][1]
        read = user_facet_weights(ws, user, 1)
        mine = [r for r in wide if r[1] == user]
        assert [(w.ts, tuple(w.weights.items())) for w in read] == [
            (ts, tuple(zip(old_facets, weights, strict=True))) for _r, _u, ts, *weights in mine]
        assert ws.conn.execute("SELECT count(*) FROM interactions").fetchone()[0] > 20_000
        assert export_facet_weights(ws, tmp_path / "f.csv") == len(wide)
    header = (tmp_path / "f.csv").read_text().splitlines()[0]
    assert header == "user_id,as_of,crowd_segment,interests,categories,brands"
    with Workspace.open(db) as ws:  # opening again migrates nothing more
        assert ws.conn.execute("SELECT count(*) FROM facet_weights").fetchone()[0] == 4 * len(wide)
