"""The template writer (models/profiles/template.py) and the profile job's choice of writer, on
the real shipped Online Retail slice with the real text encoder."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

from dynllm_tui.jobs.profiles import (
    DEFAULT_WRITER,
    choose_writer,
    profiles_job,
    snapshot_history,
    stored_writer,
)
from dynllm_tui.jobs.workspace_data import load_profile_vectors
from models.profiles.prompt import HistoryEvent, UserHistory, build_candidates, build_messages
from models.profiles.template import TEMPLATE_WRITER, TemplateWriter, template_facets
from models.profiles.text_encoder import TextEncoder
from storage.errors import DynllmError
from storage.profiles import save_profile, user_profiles
from storage.workspace import Workspace
from tests.conftest import REPO

DAY = 86400


def _event(day: int, item: str, title: str | None, quantity: float = 1.0,
           price: float | None = 2.0, category: str | None = None) -> HistoryEvent:
    return HistoryEvent(ts=day * DAY, item_id=item, title=title, category=category, brand=None,
                        quantity=quantity, price=price, value=None)


def test_template_facets_follow_the_history():
    events = [_event(1, "a", "RED MUG", category="kitchen"),
              _event(2, "b", "blue plate", category="kitchen"),
              _event(30, "a", "RED MUG", category="kitchen"),
              _event(31, "c", "garden hose", quantity=24, category="garden"),
              _event(32, "a", "RED MUG", category="kitchen")]
    history = UserHistory(user_id="u1", attributes={"country": "France"}, events=events,
                          as_of=40 * DAY, store_median_price=2.0)
    facets = template_facets(history, build_candidates(history))
    # Most bought first (3 lines of "a"), ties to the first bought; capitals lower-cased.
    assert facets.interests == ["red mug", "blue plate", "garden hose"]
    assert facets.preferred_categories == ["kitchen", "garden"]
    assert facets.favored_brands == []  # no brand in the catalogue: absent, not "unknown"
    # Mean line of (1+1+1+24+1)/5 = 5.6 units: mid-size; prices at the store's median: "mid";
    # the leading candidate category closes it.
    assert facets.crowd_segment == "frequent France mid-size buyer of mid kitchen"


def test_bad_input_gives_absent_facets_not_a_crash():
    writer = TemplateWriter()
    # No titles at all, a non-finite quantity and price, a NaN country, one event.
    lone = UserHistory(user_id="u2", attributes={"country": float("nan")},
                       events=[_event(3, "x", "", quantity=float("nan"), price=float("inf"))],
                       as_of=10 * DAY, store_median_price=float("nan"))
    result = writer.profile(lone)
    assert result.ok and result.model == TEMPLATE_WRITER
    assert result.facets.interests == []  # nothing to name: an absent facet
    assert result.facets.preferred_categories == [] and result.facets.favored_brands == []
    assert "nan" not in result.facets.crowd_segment.casefold()
    assert result.facets.crowd_segment.endswith("buyer of goods")
    assert result.input_hash == writer.input_hash(lone)
    with pytest.raises(ValueError, match="no events before"):
        writer.profile(UserHistory(user_id="u3", attributes={}, events=[], as_of=DAY))


@pytest.fixture(scope="module")
def templated(tmp_path_factory, demo_workspace_file):
    """The 60 most active customers of the shipped slice profiled by the default writer (with
    the derived taxonomy it needs), embedded."""
    db = tmp_path_factory.mktemp("template") / "ws.db"
    shutil.copy(demo_workspace_file, db)
    summary = profiles_job(db, every="quarter", min_new=100, limit=60)
    return db, summary


def test_default_job_writes_templates_of_real_histories(templated):
    db, summary = templated
    assert DEFAULT_WRITER == "template" and summary.writer == "template"
    assert summary.model == TEMPLATE_WRITER and summary.completion_tokens == 0
    assert summary.planned >= 60 and summary.made == summary.planned and summary.failed == 0
    with Workspace.open(db, create=False) as ws:
        assert stored_writer(ws) == "template"
        user_id, as_of = ws.conn.execute(
            "SELECT user_id, max(as_of) FROM profiles GROUP BY user_id ORDER BY count(*) DESC, "
            "user_id LIMIT 1").fetchone()
        snap = next(s for s in user_profiles(ws, user_id) if s["as_of"] == as_of)
        history = snapshot_history(ws, user_id, as_of)
        _, _, candidates = build_messages(history)
        assert max(e.ts for e in history.events) < as_of
        assert snap["status"] == "ok" and snap["model"] == TEMPLATE_WRITER
        assert snap["preferred_categories"] == candidates.categories[:5]
        assert snap["categories_source"] == "derived_from_titles"
        titles = {e.title.casefold() for e in history.events if e.title}
        assert snap["interests"] and all(t.casefold() in titles for t in snap["interests"])
        vectors = load_profile_vectors(ws, TextEncoder().name)
    # Every profile embedded; Online Retail has no brands: that facet is absent everywhere.
    assert vectors["vectors"].shape == (summary.made, 4, 384)
    assert vectors["present"][:, :3].all() and not vectors["present"][:, 3].any()
    assert np.isfinite(vectors["vectors"]).all()


def test_rerun_skips_every_snapshot(templated):
    db, first = templated
    again = profiles_job(db, every="quarter", min_new=100, limit=60, embed=False)
    assert again.skipped == first.planned and again.made == 0


def test_the_writer_is_chosen_as_documented(templated, tmp_path):
    db, _ = templated
    copy = tmp_path / "ws.db"
    shutil.copy(db, copy)
    with Workspace.open(copy, create=False) as ws:
        assert choose_writer(ws, None, "smollm2") == "template"
        assert choose_writer(ws, None, "http://127.0.0.1:9/v1") == "llm"  # a model was named
        assert choose_writer(ws, "llm", "smollm2") == "llm"
        with pytest.raises(DynllmError, match="--writer must be one of template, llm"):
            choose_writer(ws, "gpt", "smollm2")
        # One profile from a model: the workspace keeps the LLM unless told otherwise.
        user_id, as_of = ws.conn.execute("SELECT user_id, as_of FROM profiles LIMIT 1").fetchone()
        record = dict(next(s for s in user_profiles(ws, user_id) if s["as_of"] == as_of))
        save_profile(ws, user_id, as_of, {**record, "model": "smollm2-135m"})
        assert stored_writer(ws) == "llm" and choose_writer(ws, None, "smollm2") == "llm"
        assert choose_writer(ws, "template", "smollm2") == "template"


@pytest.mark.slow
def test_switching_to_the_llm_redoes_the_snapshots(templated, tmp_path):
    """Template profiles of one real customer, then `--writer llm`: each of its snapshots is
    made again by the model (the writer enters the input hash), and a later run without
    --writer keeps the LLM's."""
    source, _ = templated
    db = tmp_path / "ws.db"
    shutil.copy(source, db)
    with Workspace.open(db, create=False) as ws:
        user_id, user, snapshots = ws.conn.execute(
            "SELECT p.user_id, u.external_id, count(*) FROM profiles p JOIN users u "
            "ON u.id = p.user_id GROUP BY p.user_id ORDER BY count(*), p.user_id LIMIT 1"
        ).fetchone()
    kwargs = {"every": "quarter", "min_new": 100, "users": [user], "embed": False}
    second = profiles_job(db, writer="llm", **kwargs)
    assert second.writer == "llm" and second.skipped == 0
    assert second.made + second.failed == second.planned == snapshots
    third = profiles_job(db, **kwargs)  # no --writer: the workspace's LLM profiles are kept
    assert third.writer == "llm" and third.skipped == snapshots
    with Workspace.open(db, create=False) as ws:
        models = {m for (m,) in ws.conn.execute(
            "SELECT model FROM profiles WHERE user_id = ?", (user_id,))}
        others = {m for (m,) in ws.conn.execute(
            "SELECT model FROM profiles WHERE user_id != ?", (user_id,))}
    assert TEMPLATE_WRITER not in models and others == {TEMPLATE_WRITER}


def test_llm_options_with_the_template_writer_are_one_clear_line(demo_workspace):
    proc = subprocess.run(
        [sys.executable, "-m", "dynllm_tui.cli", "--db", str(demo_workspace), "profiles",
         "--writer", "template", "--engines", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip() == (
        "error: --engines and --concurrency are for the LLM writer; the template writer needs "
        "neither (add --writer llm to profile with the LLM)")
    with Workspace.open(demo_workspace, create=False) as ws:
        assert ws.conn.execute("SELECT count(*) FROM profiles").fetchone()[0] == 0


def test_a_zero_store_median_gives_no_price_word():
    # Prices and the store median all zero: no price level can be said, and none is made up.
    events = [_event(d, f"i{d}", f"item {d}", price=0.0) for d in range(1, 6)]
    history = UserHistory(user_id="u4", attributes={}, events=events, as_of=9 * DAY,
                          store_median_price=0.0)
    facets = template_facets(history, build_candidates(history))
    assert facets.crowd_segment == "frequent household-size buyer of goods"
    assert facets.interests == ["item 1", "item 2", "item 3", "item 4", "item 5"]


def test_the_apps_demo_passes_the_writer_to_the_cli():
    from dynllm_tui.cli_parser import build_parser
    from dynllm_tui.ui.home.home_screen import demo_args

    args = demo_args({"profile_limit": 3, "writer": "llm"})
    assert args == ["demo", "--no-open", "--profile-users", "3", "--writer", "llm"]
    assert build_parser().parse_args(args).writer == "llm"
    assert build_parser().parse_args(["profiles"]).writer is None  # chosen by the job
