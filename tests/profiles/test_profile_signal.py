"""bench/profile_signal.py: its measures checked by hand on tiny made-up sets, then the whole
bench on a real demo slice profiled by the real LLM (numbers in range)."""

from __future__ import annotations

import json
import math
import shutil
import sys

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import profile_signal as bench  # noqa: E402


def test_entropy_by_hand():
    assert bench.entropy_bits(["a", "a", "b", "c"]) == pytest.approx(1.5)  # 1/2, 1/4, 1/4
    assert bench.entropy_bits(["x"] * 5) == 0.0 and bench.entropy_bits([]) == 0.0


def test_verbatim_copies_by_hand():
    titles = ["WHITE HANGING HEART T-LIGHT HOLDER", "SET OF 3 CAKE TINS PANTRY DESIGN"]
    assert bench.copied_verbatim("hanging heart", titles)
    assert bench.copied_verbatim("Cake  Tins", titles)  # case and spacing do not matter
    assert not bench.copied_verbatim("heart", titles)  # one word: a theme, not a copy
    assert not bench.copied_verbatim("heart holder", titles)  # not contiguous in a title
    assert not bench.copied_verbatim("hanging hear", titles)  # not on a word boundary
    profiles = [
        {"user_id": 1, "as_of": 10, "crowd_segment": "regular UK buyer",
         "interests": ["hanging heart", "vintage"], "preferred_categories": ["mugs", "bags"],
         "favored_brands": []},
        {"user_id": 2, "as_of": 10, "crowd_segment": "regular UK buyer",
         "interests": ["cake tins", "pantry design"], "preferred_categories": ["mugs"],
         "favored_brands": []},
    ]
    stats = bench.facet_stats(profiles, {(1, 10): titles[:1], (2, 10): titles})
    # 4 phrases: "hanging heart" (user 1's title), "cake tins" and "pantry design" (user 2's).
    assert stats["interests"]["verbatim"] == 3 and stats["interests"]["verbatim_share"] == 0.75
    assert (stats["crowd_segment"]["distinct"], stats["crowd_segment"]["entropy_bits"]) == (1, 0)
    c = stats["preferred_categories"]  # mugs, bags, mugs
    assert (c["values"], c["distinct"]) == (3, 2)
    assert c["entropy_bits"] == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(
        1 / 3), abs=1e-3)
    assert stats["favored_brands"]["values"] == 0


def test_recall_and_ridge_by_hand():
    targets = np.array([[0, 0, 1], [1, 1, 0], [0, 0, 0]], dtype=float)
    scores = np.array([[3, 2, 1], [3, 2, 1], [1, 2, 3]], dtype=float)
    # Row 1: top 2 = cols 0, 1 -> 0 of 1; row 2: 2 of 2; row 3 has no target: skipped.
    assert bench.recall_at(scores, targets, k=2) == pytest.approx(0.5)
    assert bench.recall_at(scores, targets, k=3) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    true = np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]])
    w = bench.ridge_fit(x, x @ true + 0.25, 1e-8)
    assert np.allclose(w[:-1], true, atol=1e-5) and np.allclose(w[-1], 0.25, atol=1e-5)


@pytest.mark.slow
def test_bench_on_a_real_profiled_slice(tmp_path, demo_workspace_file):
    """Twelve real customers of the shipped slice, quarterly snapshots, real LLM profiles (and
    the derived taxonomy the job makes), then the whole bench."""
    from dynllm_tui.jobs.profiles import profiles_job
    from storage.workspace import Workspace

    db = tmp_path / "ws.db"
    shutil.copy(demo_workspace_file, db)
    with Workspace.open(db, create=False) as ws:
        users = [r[0] for r in ws.conn.execute(
            "SELECT u.external_id FROM interactions x JOIN users u ON u.id = x.user_id "
            "GROUP BY x.user_id ORDER BY count(*) DESC LIMIT 12 OFFSET 40")]
    summary = profiles_job(db, writer="llm", every="quarter", min_new=1, users=users)
    assert summary.made >= 12
    data = bench.load(db)
    result = bench.evaluate(data, seed=0)
    assert result["profiles"] == summary.made
    for stats in (result["facets"], result["template_facets"]):
        for facet, s in stats.items():
            assert 0 <= s["distinct"] <= s["values"], facet
            assert 0 <= s["entropy_bits"] <= math.log2(max(s["distinct"], 1)) + 1e-9, facet
    assert 0 <= result["facets"]["interests"]["verbatim_share"] <= 1
    # Online Retail has no brands: the facet is empty for the LLM and for the template.
    assert result["facets"]["favored_brands"]["values"] == 0
    assert result["facets"]["preferred_categories"]["values"] > 0  # derived categories
    probe = result["probe"]
    assert 0 < probe["snapshots_with_target"] <= result["profiles"]
    if "recall@5" in probe:
        assert probe["train_snapshots"] + probe["test_snapshots"] == probe[
            "snapshots_with_target"]
        assert all(0 <= v <= 1 for v in probe["recall@5"].values())
        # The user's own categories are a real signal for the next month on real data.
        assert probe["recall@5"]["history"] > 0
    text = bench.render(result)
    assert "Recall@5" in text or "too few" in text

    # The template workspace (to train on beside the LLM's): every ok profile replaced by its
    # template, embedded; the source workspace untouched.
    from dynllm_tui.jobs.profiles import stored_encoder_name
    from dynllm_tui.jobs.workspace_data import load_profile_vectors

    copy = tmp_path / "templates.db"
    assert bench.write_template_workspace(db, copy) == summary.made
    with Workspace.open(copy, create=False) as ws:
        rows = ws.conn.execute("SELECT crowd_segment, interests, model FROM profiles "
                               "WHERE status = 'ok'").fetchall()
        vectors = load_profile_vectors(ws, stored_encoder_name(ws))
    with Workspace.open(db, create=False) as ws:
        models = {m for (m,) in ws.conn.execute("SELECT model FROM profiles")}
    assert len(rows) == summary.made and {m for _, _, m in rows} == {"template (no LLM)"}
    assert models == {"smollm2"}
    assert all(seg and json.loads(interests) for seg, interests, _ in rows)
    assert {t["crowd_segment"] for t in data["templates"]} == {seg for seg, _, _ in rows}
    assert len(vectors["user"]) == summary.made  # every template profile has its vectors
    with pytest.raises(SystemExit, match="exists"):
        bench.write_template_workspace(db, copy)
