"""The app on a workspace made by the real jobs, not by hand-written rows: a real slice, real
LLM profiles and a run trained with `--ablation facet:interests`. The user detail's facet view
must show the one facet the run kept, with its real weight, and nothing of the other three."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from rich.console import Console

from dynllm_tui.ui.user_detail.user_detail_screen import UserDetailScreen
from models.vocabulary import FACET_LABELS
from storage.browse import find_user, user_detail
from storage.workspace import Workspace
from tests.ui.conftest import make_app, open_most_active_user, settle

pytestmark = pytest.mark.slow
SIZE = (100, 30)


def text(widget) -> str:
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return " ".join(console.export_text().split())


async def test_facet_view_shows_only_the_facet_of_an_ablation_run(ablation_workspace_file,
                                                                  tmp_path):
    db = tmp_path / "ws.db"
    shutil.copy(ablation_workspace_file, db)
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_most_active_user(pilot)
        assert isinstance(screen, UserDetailScreen)
        with Workspace.open(db, create=False) as ws:
            detail = user_detail(ws, find_user(ws, screen.external_id))
        assert detail.run is not None and detail.facet_weights
        assert {w.facets for w in detail.facet_weights} == {("interests",)}
        await pilot.press("n", "n", "n")  # profile, top 10, facet weights
        await settle(pilot)
        bars = text(screen.query_one("#bars"))
        assert f"run #{detail.run.id}" in bars
        assert f"{FACET_LABELS['interests']} " in bars and "1.000" in bars
        for other in ("crowd_segment", "categories", "brands"):
            assert FACET_LABELS[other] not in bars, bars
        assert screen.query_one("#bars").display and screen.query_one("#evolution").display
        assert not screen.query_one("#no-weights").display


async def test_an_absent_facet_reads_not_available_and_has_no_weight(ui_workspace, tmp_path):
    """A run over all four facets on a catalogue without brands: brands were masked (no stored
    weight), and the view says "not available" for it instead of showing a number."""
    from tests.ui.conftest import TOP_USER

    with Workspace.open(ui_workspace) as ws, ws.transaction() as conn:
        config = {"model_name": "dynllm", "with_profiles": True,
                  "model": {"facets": ["crowd_segment", "interests", "categories", "brands"],
                            "no_profiles": False}}
        conn.execute("UPDATE runs SET config = ? WHERE id = 1", (json.dumps(config),))
        conn.execute("DELETE FROM facet_weights WHERE facet = 'brands'")
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_most_active_user(pilot)
        assert isinstance(screen, UserDetailScreen) and screen.external_id == TOP_USER
        await pilot.press("n", "n", "n")
        await settle(pilot)
        bars = text(screen.query_one("#bars"))
    assert f"{FACET_LABELS['brands']} not available" in bars, bars
    assert f"{FACET_LABELS['interests']} " in bars and "not available" not in bars.split(
        FACET_LABELS["brands"])[0]
