"""The profile job's LLM writer end to end: real customers, the real packaged LLM and text encoder
(the template writer: tests/jobs/test_template_profiles.py).

Five real Online Retail customers from the shipped slice, quarterly snapshots (a boundary on
2011-10-01 plus the final one), so ten profiles at most: small enough for CI, real in every part.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dynllm_tui.jobs.control import CancelFlag
from dynllm_tui.jobs.profiles import profiles_job, snapshot_history
from dynllm_tui.jobs.workspace_data import load_profile_vectors
from models.profiles.prompt import build_messages
from models.profiles.text_encoder import TextEncoder
from storage.profiles import user_history, user_profiles
from storage.workspace import Workspace
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def five_users(demo_workspace_file):
    with Workspace.open(demo_workspace_file, create=False) as ws:
        rows = ws.conn.execute(
            "SELECT u.external_id FROM interactions x JOIN users u ON u.id = x.user_id "
            "GROUP BY x.user_id ORDER BY count(*) DESC LIMIT 40"
        ).fetchall()
    return [r[0] for r in rows[-5:]]  # modest histories: short prompts


@pytest.fixture(scope="module")
def profiled(tmp_path_factory, demo_workspace_file, five_users):
    import shutil

    db = tmp_path_factory.mktemp("profiles") / "ws.db"
    shutil.copy(demo_workspace_file, db)
    summary = profiles_job(db, writer="llm", every="quarter", min_new=1, users=five_users)
    return db, summary


def test_profiles_are_valid_and_leak_free(profiled, five_users):
    db, summary = profiled
    assert summary.planned >= 5 and summary.made + summary.failed == summary.planned
    assert summary.made >= summary.planned - 1  # a rare invalid answer is recorded, not hidden
    with Workspace.open(db, create=False) as ws:
        for key in five_users:
            user_id = ws.conn.execute("SELECT id FROM users WHERE external_id = ?",
                                      (key,)).fetchone()[0]
            snaps = user_profiles(ws, user_id)
            assert snaps, key
            for snap in snaps:
                history = user_history(ws, user_id, snap["as_of"])
                assert history and max(e.ts for e in history) < snap["as_of"]
                assert snap["n_events"] == len(history)
                if snap["status"] != "ok":
                    assert snap["raw"] is not None and snap["error"]
                    continue
                assert snap["crowd_segment"] and len(snap["interests"]) <= 5
                assert len(snap["preferred_categories"]) <= 5
                assert len(snap["favored_brands"]) <= 5
                # Online Retail has no categories or brands: derived from titles, or unknown.
                assert snap["categories_source"] == "derived_from_titles"
                assert snap["brands_source"] == "unknown" and snap["favored_brands"] == []
                # Chosen from candidates drawn from this user's own history before as_of.
                _, _, candidates = build_messages(snapshot_history(ws, user_id, snap["as_of"]))
                assert set(snap["preferred_categories"]) <= set(candidates.categories)


def test_rerun_makes_nothing_new(profiled, five_users):
    db, first = profiled
    again = profiles_job(db, writer="llm", every="quarter", min_new=1, users=five_users,
                         embed=False)
    assert again.made == again.failed == 0 and again.skipped == first.planned


def test_facets_and_items_are_embedded_once(profiled):
    db, summary = profiled
    with Workspace.open(db, create=False) as ws:
        items = ws.conn.execute("SELECT count(*) FROM items").fetchone()[0]
        item_vectors = ws.conn.execute(
            "SELECT count(*) FROM embeddings WHERE kind = 'item'").fetchone()[0]
        vectors = load_profile_vectors(ws, TextEncoder().name)
    # Online Retail has no categories: the taxonomy the job derives first embeds every item
    # (stored, so the embedding step reuses them and has none left to do).
    assert item_vectors == items and summary.embedded.get("item", 0) == 0
    assert vectors["vectors"].shape == (summary.made, 4, 384)
    norms = np.linalg.norm(vectors["vectors"], axis=2)
    assert np.allclose(norms[norms > 0], 1.0, atol=1e-4)
    from dynllm_tui.jobs.profiles import embed_texts

    with Workspace.open(db, create=False) as ws:
        assert embed_texts(ws) == {}  # nothing changed, nothing recomputed


def test_cancel_then_resume(tmp_path, demo_workspace_file, five_users):
    import shutil

    db = tmp_path / "ws.db"
    shutil.copy(demo_workspace_file, db)
    flag = CancelFlag()

    def stop_after_two(done, total, phase):
        if phase == "profiles" and done >= 2:
            flag.set()

    # One engine, one request at a time: the cancel lands between two profiles (the pool of
    # several engines is cancelled in tests/profiles/test_batched_llm.py).
    first = profiles_job(db, writer="llm", every="quarter", min_new=1, users=five_users[:2],
                         progress=stop_after_two, cancel=flag, embed=False, engines=1)
    assert first.cancelled and first.made + first.failed == 2
    second = profiles_job(db, writer="llm", every="quarter", min_new=1, users=five_users[:2],
                          embed=False)
    assert second.skipped == 2 and second.made + second.failed == second.planned - 2


def test_kill_9_then_resume(tmp_path, demo_workspace_file, five_users):
    import shutil

    db = tmp_path / "ws.db"
    shutil.copy(demo_workspace_file, db)
    args = [sys.executable, "-m", "dynllm_tui.cli", "--db", str(db), "profiles", "--writer",
            "llm", "--every", "quarter", "--min-new", "1", "--users", ",".join(five_users[:2]),
            "--no-embed", "--json"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    made = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        with Workspace.open(db, create=False) as ws:
            made = ws.conn.execute("SELECT count(*) FROM profiles").fetchone()[0]
        if made >= 1:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert made >= 1
    with Workspace.open(db, create=False) as ws:
        kept = ws.conn.execute("SELECT count(*) FROM profiles").fetchone()[0]
    out = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600, check=True)
    resumed = json.loads(out.stdout)
    assert resumed["skipped"] == kept
    assert resumed["made"] + resumed["failed"] + resumed["skipped"] == resumed["planned"]


def test_unknown_user_and_empty_workspace(tmp_path, demo_workspace):
    from storage.errors import DynllmError

    with pytest.raises(DynllmError, match="unknown user id 'nobody'"):
        profiles_job(demo_workspace, users=["nobody"])
    Workspace.open(tmp_path / "empty.db").close()
    with pytest.raises(DynllmError, match="no interactions"):
        profiles_job(tmp_path / "empty.db")
