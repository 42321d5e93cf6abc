"""User detail's recommendations in three lists (All, Buy again, Discover) with reasons: on the
hand-written run with lists added as the replay stores them, on a run stored before the lists,
and on a workspace made by the real jobs (import, profiles, train)."""

from __future__ import annotations

import io
import shutil

import pytest
from rich.console import Console
from textual.widgets import DataTable

from dynllm_tui.ui.user_detail.user_detail_screen import UserDetailScreen
from storage.browse import find_user, user_detail
from storage.workspace import Workspace
from tests.ui.conftest import TOP_USER, make_app, settle
from tests.ui.recommendation_lists import NO_DISCOVER_POSITION, add_lists

SIZE = (110, 32)


def text(widget) -> str:
    console = Console(width=300, file=io.StringIO(), record=True)
    console.print(widget.content)
    return " ".join(console.export_text().split())


def _column(table: DataTable, column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


async def _open_user(pilot, downs: int = 0) -> UserDetailScreen:
    await pilot.press("2")
    await settle(pilot)
    await pilot.press(*["down"] * downs, "enter")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, UserDetailScreen)
    return screen


async def test_the_three_lists_switch_with_their_reasons(ui_workspace):
    add_lists(ui_workspace)
    with Workspace.open(ui_workspace) as ws:
        detail = user_detail(ws, find_user(ws, TOP_USER))
    assert detail.has_lists and set(detail.lists) == {"all", "buy-again", "discover"}
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_user(pilot)
        await pilot.press("l")  # from the timeline: straight to the recommendations, next list
        await settle(pilot)
        assert screen.query_one("TabbedContent").active == "recs"
        table = screen.query_one("#recs-table", DataTable)
        view = screen.query_one("#recs-view")
        for name in ("buy-again", "discover", "all"):
            assert view.list_name == name
            expected = detail.lists[name]
            assert _column(table, 1) == [r.item_key for r in expected]
            assert _column(table, 5) == [r.reason for r in expected]
            flags = set(_column(table, 4))
            assert flags == {"buy-again": {"yes"}, "discover": {"new"},
                             "all": {"yes", "new"}}[name]
            switch = text(screen.query_one("#recs-lists"))
            assert "Buy again (8)" in switch and "Discover (10)" in switch
            why = text(screen.query_one("#recs-why"))
            assert why == f"Why #1 {expected[0].title}: {expected[0].reason}"
            await pilot.press("l")
            await settle(pilot)
        # The line under the table follows the cursor.
        table.focus()
        await pilot.press("down")
        await settle(pilot)
        second = detail.lists["buy-again"][1]
        assert text(screen.query_one("#recs-why")).endswith(second.reason)


async def test_a_user_with_no_discover_items_gets_a_clear_empty_state(ui_workspace):
    add_lists(ui_workspace)
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_user(pilot, downs=NO_DISCOVER_POSITION)
        await pilot.press("l", "l")  # buy again, then discover
        await settle(pilot)
        assert not screen.query_one("#recs-table").display
        empty = screen.query_one("#no-recs")
        assert empty.display
        assert text(empty) == (f"Nothing to discover for customer {screen.external_id}: run #1 "
                               "has no item they have not bought before")
        assert "Discover (0)" in text(screen.query_one("#recs-lists"))


async def test_a_run_stored_before_the_lists_says_so(ui_workspace):
    app = make_app(ui_workspace)  # the hand-written run: the "all" list only, no reasons
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_user(pilot)
        await pilot.press("n", "n")
        await settle(pilot)
        table = screen.query_one("#recs-table", DataTable)
        assert table.row_count == 10 and set(_column(table, 5)) == {"—"}
        message = ("Run #1 was stored before buy-again/discover lists and reasons; retrain or "
                   "replay it")
        assert text(screen.query_one("#recs-why")) == message
        await pilot.press("l")
        await settle(pilot)
        assert not table.display and text(screen.query_one("#no-recs")) == message


@pytest.mark.slow
async def test_lists_and_reasons_of_a_run_made_by_the_real_jobs(ablation_workspace_file,
                                                                 tmp_path):
    db = tmp_path / "ws.db"
    shutil.copy(ablation_workspace_file, db)
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_user(pilot)  # the customer with the most events
        with Workspace.open(db, create=False) as ws:
            detail = user_detail(ws, screen.user_id)
            profiled = ws.conn.execute("SELECT count(*) FROM profiles WHERE user_id = ? AND "
                                       "status = 'ok'", (screen.user_id,)).fetchone()[0]
        assert detail.has_lists and detail.lists["discover"] and detail.lists["buy-again"]
        await pilot.press("l", "l")  # discover
        await settle(pilot)
        table = screen.query_one("#recs-table", DataTable)
        assert _column(table, 1) == [r.item_key for r in detail.lists["discover"]]
        assert set(_column(table, 4)) == {"new"}
        reasons = _column(table, 5)
        assert all(r.startswith("new to this customer") for r in reasons)
        # The items were embedded and the customer profiled: every part of the reason is there.
        assert all("; like " in r for r in reasons), reasons
        if profiled:
            assert all("; interests: " in r for r in reasons), reasons  # the run's one facet
        await pilot.press("l")  # all
        await settle(pilot)
        again = [r.reason for r in detail.lists["buy-again"]]
        assert all(r.startswith(("bought once", "bought twice", "bought ")) for r in again)
        assert all(" ago" in r.split(";")[0] for r in again)
