"""User detail, the parts that keep opening a user fast (bench/ui.py measures the time): the
Users screen reuses one detail screen, only the timeline is built on opening, and the other tabs
catch up with the user shown when they are shown again, never showing the previous user."""

from __future__ import annotations

import io
import threading

from rich.console import Console
from textual.widgets import DataTable, TabbedContent

from dynllm_tui.ui.user_detail.user_detail_screen import UserDetailScreen
from dynllm_tui.ui.users.users_screen import PUSH_WAIT, UsersScreen
from storage.browse import find_user, user_detail, user_recommendations
from storage.workspace import Workspace
from tests.ui.conftest import RUN_USERS, TOP_USER, make_app, settle

SIZE = (100, 30)


def text(widget) -> str:
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return " ".join(console.export_text().split())


def _cells(table: DataTable, column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


async def _open(pilot, *keys: str) -> UserDetailScreen:
    await pilot.press(*keys, "enter")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, UserDetailScreen)
    return screen


async def test_the_detail_screen_is_reused_and_shows_only_the_new_user(ui_workspace):
    with Workspace.open(ui_workspace) as ws:
        ids = [r[0] for r in ws.conn.execute(
            "SELECT u.external_id FROM interactions x JOIN users u ON u.id = x.user_id "
            "GROUP BY x.user_id ORDER BY count(*) DESC, x.user_id LIMIT ?", (RUN_USERS + 1,))]
        second = find_user(ws, ids[1])
        expected_recs = [r.item_key for r in user_recommendations(ws, second, 1, 10)]
        second_detail = user_detail(ws, second, timeline_limit=100)
        first_detail = user_detail(ws, find_user(ws, TOP_USER), timeline_limit=100)
    assert ids[0] == TOP_USER and len(expected_recs) == 10

    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        users = app.screen
        assert isinstance(users, UsersScreen)

        first = await _open(pilot)
        assert first.external_id == TOP_USER
        # Only the timeline is built on opening: the other tabs wait until shown.
        assert all(not pane.children for pane in first.query("TabPane")
                   if pane.id != "timeline")
        await pilot.press("n", "n")  # Top 10
        await settle(pilot)
        recs = first.query_one("#recs-table", DataTable)
        top_user_recs = _cells(recs, 1)
        assert len(top_user_recs) == 10 and top_user_recs != expected_recs
        await pilot.press("n")  # facet weights, for the top user
        await settle(pilot)
        assert "run #1" in text(first.query_one("#bars"))
        bars_first = text(first.query_one("#bars"))

        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is users
        second_screen = await _open(pilot, "down")
        assert second_screen is first  # the same screen, not a new one
        assert second_screen.external_id == ids[1] and second_screen.user_id == second
        tabs = second_screen.query_one(TabbedContent)
        assert tabs.active == "timeline"
        assert app.screen.focused is second_screen.query_one("#timeline-table")
        header = text(second_screen.query_one("#user-header"))
        assert f"Customer {ids[1]}" in header and TOP_USER not in header
        timeline = second_screen.query_one("#timeline-table", DataTable)
        assert timeline.cursor_row == 0 and timeline.scroll_y == 0
        assert _cells(timeline, 2) == [e.item_key for e in second_detail.timeline]
        assert _cells(timeline, 2) != [e.item_key for e in first_detail.timeline]

        await pilot.press("n", "n")  # Top 10: brought up to date when shown
        await settle(pilot)
        assert _cells(recs, 1) == expected_recs
        await pilot.press("n")
        await settle(pilot)
        bars_second = text(second_screen.query_one("#bars"))
        assert "run #1" in bars_second and bars_second != bars_first

        # A user without run outputs: the tabs say so instead of keeping the previous user's.
        await pilot.press("escape")
        await settle(pilot)
        third = await _open(pilot, *["down"] * (RUN_USERS - 1))
        assert third is first and third.external_id == ids[RUN_USERS]
        await pilot.press("n", "n")
        await settle(pilot)
        assert not recs.display and recs.row_count == 0
        empty = third.query_one("#no-recs")
        assert empty.display and "no recommendations" in text(empty)


async def test_a_late_answer_for_the_previous_user_is_ignored(ui_workspace):
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        screen = await _open(pilot)
        with Workspace.open(ui_workspace) as ws:
            other = user_detail(ws, screen.user_id + 1)
        screen.show(other)
        await pilot.pause()
        assert screen.detail.user_id == screen.user_id
        assert f"Customer {TOP_USER}" in text(screen.query_one("#user-header"))


async def test_a_slow_answer_shows_the_reused_screen_loading_then_the_data(ui_workspace,
                                                                          monkeypatch):
    from dynllm_tui.ui.user_detail import user_detail_screen

    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        screen = await _open(pilot)
        await pilot.press("escape")
        await settle(pilot)

        slow = threading.Event()

        def slow_detail(*args, **kwargs):
            slow.wait(5)
            return user_detail(*args, **kwargs)

        monkeypatch.setattr(user_detail_screen, "user_detail", slow_detail)
        await pilot.press("down", "enter")
        await pilot.pause(PUSH_WAIT + 0.2)
        assert app.screen is screen  # shown after PUSH_WAIT, before the data
        assert "loading" in text(screen.query_one("#user-header"))
        assert screen.query_one("#timeline-table", DataTable).row_count == 0
        slow.set()
        await settle(pilot)
        assert "loading" not in text(screen.query_one("#user-header"))
        assert screen.query_one("#timeline-table", DataTable).row_count > 0

        # Gone to Home before the answer came: the detail does not land on Home's stack.
        slow.clear()
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("down", "enter", "1")
        slow.set()
        await settle(pilot)
        await pilot.pause(PUSH_WAIT + 0.1)
        assert not isinstance(app.screen, UserDetailScreen)
        assert screen not in app.screen_stack
