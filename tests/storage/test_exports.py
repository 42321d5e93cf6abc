"""CSV exports: columns, formula neutralisation, atomic writes, clear errors.

The run and its recommendations here are written directly into a real workspace (the model
that produces them is tested on its own); what is under test is the exporter."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from models.vocabulary import FACETS
from storage.exports import (
    FACET_KEY_COLUMNS,
    RECOMMENDATION_COLUMNS,
    ExportError,
    export_facet_weights,
    export_recommendations,
    neutralise,
)
from storage.workspace import Workspace


@pytest.fixture
def workspace_with_run(demo_workspace):
    with Workspace.open(demo_workspace) as ws, ws.transaction() as conn:
        conn.execute(
            "INSERT INTO runs (id, created_at, finished_at, status, config, active) "
            "VALUES (1, '2026-11-27T00:00:00+00:00', '2026-11-27T01:00:00+00:00', 'done', ?, 1)",
            (json.dumps({"model_name": "dynllm"}),),
        )
        users = [r[0] for r in conn.execute("SELECT id FROM users ORDER BY id LIMIT 3")]
        items = [r[0] for r in conn.execute("SELECT id FROM items ORDER BY id LIMIT 12")]
        # A title a spreadsheet would run as a formula.
        conn.execute("UPDATE items SET title = '=HYPERLINK(\"x\")' WHERE id = ?", (items[0],))
        for u in users:
            for rank, item in enumerate(items, start=1):
                conn.execute("INSERT INTO recommendations (run_id, user_id, rank, item_id, score, "
                             "bought_before) VALUES (1, ?, ?, ?, ?, 0)",
                             (u, rank, item, 1.0 / rank - 0.5))
            for t in (1_320_000_000, 1_321_000_000):
                conn.executemany("INSERT INTO facet_weights VALUES (1, ?, ?, ?, ?)",
                                 [(u, t, facet, w) for facet, w in
                                  zip(FACETS, (0.4, 0.3, 0.2, 0.1), strict=True)])
    return demo_workspace


def _read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_recommendations_csv(workspace_with_run, tmp_path):
    out = tmp_path / "recs.csv"
    with Workspace.open(workspace_with_run) as ws:
        written = export_recommendations(ws, out, k=5)
        first_user = ws.conn.execute(
            "SELECT external_id FROM users ORDER BY id LIMIT 3").fetchall()
    rows = _read(out)
    assert tuple(rows[0]) == RECOMMENDATION_COLUMNS
    assert written == len(rows) - 1 == 15
    by_user = {}
    for row in rows[1:]:
        by_user.setdefault(row[0], []).append(int(row[1]))
        assert row[5] == "1" and row[6] == "dynllm" and row[7].endswith("Z")
    assert sorted(by_user) == sorted(u for (u,) in first_user)
    assert all(ranks == [1, 2, 3, 4, 5] for ranks in by_user.values())
    formula = [row for row in rows[1:] if row[1] == "1"][0]
    assert formula[3] == "'=HYPERLINK(\"x\")"
    assert float([row for row in rows[1:] if row[1] == "5"][0][4]) == pytest.approx(-0.3)


def test_recommendations_for_some_users_and_unknown_user(workspace_with_run, tmp_path):
    with Workspace.open(workspace_with_run) as ws:
        user = ws.conn.execute("SELECT external_id FROM users ORDER BY id").fetchone()[0]
        assert export_recommendations(ws, tmp_path / "one.csv", k=3, users=[user]) == 3
        with pytest.raises(ExportError, match="unknown user id"):
            export_recommendations(ws, tmp_path / "none.csv", users=["no-such-user"])
    assert not (tmp_path / "none.csv").exists()


def test_facet_weights_csv(workspace_with_run, tmp_path):
    out = tmp_path / "facets.csv"
    with Workspace.open(workspace_with_run) as ws:
        assert export_facet_weights(ws, out) == 6
    rows = _read(out)
    assert tuple(rows[0]) == (*FACET_KEY_COLUMNS, *FACETS)
    assert rows[1][1] == "2011-10-30T18:40:00Z"
    assert [float(x) for x in rows[1][2:]] == [0.4, 0.3, 0.2, 0.1]


def _add_run_with_facets(db, run_id: int, rows: list[tuple[str, float]]) -> None:
    """A finished run whose facet weights hold `rows` (facet, weight), in that stored order, at
    two events of the first user."""
    with Workspace.open(db) as ws, ws.transaction() as conn:
        conn.execute("INSERT INTO runs (id, created_at, status, config) "
                     "VALUES (?, '2026-11-27T00:00:00+00:00', 'done', '{}')", (run_id,))
        user = conn.execute("SELECT id FROM users ORDER BY id").fetchone()[0]
        for t in (1_320_000_000, 1_321_000_000):
            conn.executemany("INSERT INTO facet_weights VALUES (?, ?, ?, ?, ?)",
                             [(run_id, user, t, facet, w) for facet, w in rows])


def test_facet_weights_csv_of_a_one_facet_run(workspace_with_run, tmp_path):
    """A run trained with `--ablation facet:interests` stored one facet: one weight column, and
    no column for the facets it does not have, whether or not the canonical order is given."""
    _add_run_with_facets(workspace_with_run, 2, [("interests", 1.0)])
    with Workspace.open(workspace_with_run) as ws:
        assert export_facet_weights(ws, tmp_path / "a.csv", run_id=2) == 2
        assert export_facet_weights(ws, tmp_path / "b.csv", run_id=2, facets=FACETS) == 2
    for name in ("a.csv", "b.csv"):
        rows = _read(tmp_path / name)
        assert rows[0] == ["user_id", "as_of", "interests"]
        assert [r[2] for r in rows[1:]] == ["1.000000", "1.000000"]


def test_facet_columns_follow_the_given_order_else_the_stored_one(workspace_with_run,
                                                                   tmp_path):
    stored = [("brands", 0.1), ("crowd_segment", 0.6), ("novelty", 0.3)]  # not canonical
    _add_run_with_facets(workspace_with_run, 2, stored)
    with Workspace.open(workspace_with_run) as ws:
        export_facet_weights(ws, tmp_path / "stored.csv", run_id=2)
        export_facet_weights(ws, tmp_path / "canonical.csv", run_id=2, facets=FACETS)
    as_stored = _read(tmp_path / "stored.csv")
    assert as_stored[0] == ["user_id", "as_of", "brands", "crowd_segment", "novelty"]
    assert as_stored[1][2:] == ["0.100000", "0.600000", "0.300000"]
    # Canonical facets first in canonical order; one this build does not know comes last.
    canonical = _read(tmp_path / "canonical.csv")
    assert canonical[0] == ["user_id", "as_of", "crowd_segment", "brands", "novelty"]
    assert canonical[1][2:] == ["0.600000", "0.100000", "0.300000"]


def test_bad_targets_write_nothing(workspace_with_run, tmp_path):
    with Workspace.open(workspace_with_run) as ws:
        with pytest.raises(ExportError, match="does not exist"):
            export_recommendations(ws, tmp_path / "missing" / "recs.csv")
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        # Root ignores permission bits, so also try a folder no one may write to.
        target = locked if not os.access(locked, os.W_OK) else Path("/sys/kernel")
        try:
            with pytest.raises(ExportError, match="not writable"):
                export_recommendations(ws, target / "recs.csv")
        finally:
            locked.chmod(0o700)
        assert list(locked.iterdir()) == []


def test_failure_midway_leaves_no_file_and_keeps_an_old_one(workspace_with_run, tmp_path):
    out = tmp_path / "recs.csv"
    out.write_text("previous export\n")

    def explode(done, total, phase):
        raise RuntimeError("disk full")

    with Workspace.open(workspace_with_run) as ws, pytest.raises(RuntimeError):
        export_recommendations(ws, out, k=5, progress=explode)
    assert out.read_text() == "previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".csv" or
                  p.name.endswith(".part")) == ["recs.csv"]


def test_no_run_yet(demo_workspace, tmp_path):
    with Workspace.open(demo_workspace) as ws, pytest.raises(ExportError, match="train one"):
        export_recommendations(ws, tmp_path / "recs.csv")
    assert not (tmp_path / "recs.csv").exists()


def test_neutralise():
    assert neutralise("=1+1") == "'=1+1"
    assert neutralise("@SUM(A1)") == "'@SUM(A1)"
    assert neutralise("\tx") == "'\tx"
    assert neutralise("plain") == "plain" and neutralise(-3.5) == -3.5


def test_export_gets_the_usual_file_mode(workspace_with_run, tmp_path):
    umask = os.umask(0o022)
    try:
        with Workspace.open(workspace_with_run) as ws:
            export_recommendations(ws, tmp_path / "shared.csv", k=1)
    finally:
        os.umask(umask)
    assert (tmp_path / "shared.csv").stat().st_mode & 0o777 == 0o644
