"""`train --text-term` end to end on a workspace made by the real commands (a real slice, real
LLM profiles with embedded facets, real title vectors): the run records the term, learns its
per-facet weights from zero, stores recommendations for every user, and `recommend` reloads the
checkpoint with the term. Without profiles or with `--no-profiles` the command refuses in one
line before it records a run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import torch

from models.vocabulary import FACETS
from storage.workspace import Workspace
from tests.cli.ablation_workspace import CLI, ablation_workspace, cli
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, online_retail_path):
    """A copy of the shared real workspace with one `train --text-term --repeat-term` run
    (batches of 256: the slice's snapshot is on 6 December and the training part ends that
    afternoon, and a snapshot applies from the batch after its as_of, so the default 2048 would
    leave no training event with a profile to learn the term from)."""
    built = ablation_workspace(tmp_path_factory, online_retail_path)
    db = tmp_path_factory.mktemp("text_term") / "ws.db"
    shutil.copy(built.db, db)
    summary = json.loads(cli(db, "train", "--epochs", "1", "--batch-size", "256", "--text-term",
                             "--repeat-term", "--activate", "always", "--json"))
    return db, summary


def _refused(db, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "--db", str(db), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"})


def test_the_run_records_the_term_and_learns_its_facet_weights(trained):
    db, summary = trained
    assert summary["status"] == "done" and summary["with_profiles"] is True
    with Workspace.open(db, create=False) as ws:
        config, checkpoint = ws.conn.execute(
            "SELECT config, checkpoint_path FROM runs WHERE id = ?",
            (summary["run_id"],)).fetchone()
        users = ws.conn.execute("SELECT count(*) FROM users").fetchone()[0]
        recommended = ws.conn.execute(
            "SELECT count(DISTINCT user_id) FROM recommendations WHERE run_id = ? "
            "AND list = 'all'", (summary["run_id"],)).fetchone()[0]
    config = json.loads(config)
    assert config["model"]["text_term"] is True and config["model"]["repeat_term"] is True
    assert config["model_name"] == "dynllm + repeat + text"
    assert recommended == users
    weights = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"][
        "text_term.weight"]
    # One weight per facet, started at zero: a trained epoch moved them.
    assert weights.shape == (len(FACETS),) and bool(weights.abs().sum() > 0)


def test_recommend_reloads_the_run_with_its_text_term(trained):
    db, summary = trained
    with Workspace.open(db, create=False) as ws:
        user = ws.conn.execute(
            "SELECT u.external_id FROM profiles p JOIN users u ON u.id = p.user_id "
            "WHERE p.status = 'ok' ORDER BY u.external_id LIMIT 1").fetchone()[0]
    out = json.loads(cli(db, "recommend", user, "--k", "5", "--json"))
    assert out["run_id"] == summary["run_id"]
    assert [r["rank"] for r in out["items"]] == [1, 2, 3, 4, 5]


def test_the_text_term_without_profiles_is_refused_before_a_run_is_recorded(trained,
                                                                             demo_workspace):
    db, _ = trained
    with Workspace.open(db, create=False) as ws:
        runs_before = ws.conn.execute("SELECT count(*) FROM runs").fetchone()[0]
    both = _refused(db, "train", "--epochs", "1", "--text-term", "--no-profiles")
    assert both.returncode != 0 and "cannot go with --no-profiles" in both.stderr
    ablated = _refused(db, "train", "--epochs", "1", "--text-term", "--ablation", "no_profiles")
    assert ablated.returncode != 0 and "no_profiles ablation" in ablated.stderr
    none = _refused(demo_workspace, "train", "--epochs", "1", "--text-term")
    assert none.returncode != 0 and "dynllm-tui profiles" in none.stderr
    assert str(demo_workspace) in none.stderr
    with Workspace.open(db, create=False) as ws:
        assert ws.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == runs_before
    with Workspace.open(demo_workspace, create=False) as ws:
        assert ws.conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
