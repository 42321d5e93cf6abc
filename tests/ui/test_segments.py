"""The Segments screen and the Users filters, driven with Textual's pilot on real workspaces
(the demo slice with a run, its lists and profiles written by `save_profile`): Segments →
Enter → Users filtered to the segment; sorting Users by clicking any column header; filter keys
and clearing them; the segment export key; a workspace without profiles says how to make them."""

from __future__ import annotations

import csv
import shutil

import pytest

from dynllm_tui.jobs.segments import NO_PROFILES, default_export_name
from dynllm_tui.ui.segments.segment_pane import SegmentPane
from dynllm_tui.ui.segments.segments_screen import SegmentsScreen
from dynllm_tui.ui.segments.segments_table import SegmentsTable
from dynllm_tui.ui.users.filter_line import FilterLine
from dynllm_tui.ui.users.users_screen import UsersScreen
from dynllm_tui.ui.users.users_table import UsersTable
from storage.workspace import Workspace
from tests.ui.conftest import _fix_import_time, add_run, make_app, settle
from tests.ui.recommendation_lists import add_lists
from tests.ui.segments_workspace import GIFT, PARTY, SOLO, add_segment_profiles, ranked_users

SIZE = (120, 36)


@pytest.fixture(scope="module")
def segments_file(tmp_path_factory, demo_workspace_file):
    """The demo data with the hand-written run and its lists, and seven customers profiled
    into three segments (never written by tests: they copy it)."""
    db = tmp_path_factory.mktemp("ui-segments") / "ws.db"
    shutil.copy(demo_workspace_file, db)
    _fix_import_time(db)
    add_run(db)
    add_lists(db)
    add_segment_profiles(db)
    return db


@pytest.fixture
def segments_workspace(tmp_path, segments_file):
    db = tmp_path / "ws.db"
    shutil.copy(segments_file, db)
    return db


def _text(widget) -> str:
    return str(widget.render())


async def test_segments_enter_opens_users_filtered_to_the_segment(segments_workspace):
    app = make_app(segments_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, SegmentsScreen)
        table = screen.query_one(SegmentsTable)
        assert table.segments == [GIFT, PARTY, SOLO]
        summary = _text(screen.query_one("#segments-summary"))
        assert "3 segments · 193 of 200 customers have no profile (in no segment)" in summary
        pane = _text(screen.query_one(SegmentPane).query_one("#segment-detail"))
        assert pane.startswith(GIFT) and "Buy again · most recommended" in pane
        await pilot.press("down")
        await settle(pilot)
        assert _text(screen.query_one("#segment-detail")).startswith(PARTY)
        await pilot.press("enter")
        await settle(pilot)
        users = app.screen
        assert isinstance(users, UsersScreen) and users.segment == PARTY
        rows = users.query_one(UsersTable).rows_by_key.values()
        with Workspace.open(segments_workspace, readonly=True) as ws:
            expected = set(ranked_users(ws.conn)[3:6])
        assert {r.user_id for r in rows} == expected and users.total == 3
        assert f"segment = {PARTY!r}" in _text(users.query_one(FilterLine))
        await pilot.press("backspace")  # clear the filters: every customer again
        await settle(pilot)
        assert users.segment is None and users.total == 200
        assert not users.query_one(FilterLine).has_class("active")
        # Back to Segments, the last one: the filter follows the new choice.
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        assert app.screen is users and users.segment == SOLO and users.total == 1


async def test_users_sort_by_clicking_any_column_header(segments_workspace):
    app = make_app(segments_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        users = app.screen
        table = users.query_one(UsersTable)

        async def click_header(key: str) -> None:
            x = 0
            for column in table.ordered_columns:
                if column.key.value == key:
                    break
                x += column.get_render_width(table)
            await pilot.click(UsersTable, offset=(x + 1, 0))
            await settle(pilot)

        await click_header("segment")
        assert (users.sort, users.descending) == ("segment", False)
        segments = [r.segment for r in table.rows_by_key.values()]
        assert segments == [None] * 100  # customers without a profile first (a page of them)
        await click_header("segment")  # the same header again: reversed
        assert (users.sort, users.descending) == ("segment", True)
        segments = [r.segment for r in table.rows_by_key.values()]
        assert segments[:7] == [SOLO] + [PARTY] * 3 + [GIFT] * 3
        assert segments[7:] == [None] * 93
        await click_header("attribute")
        assert users.sort == "attribute"
        countries = [r.attribute or "" for r in table.rows_by_key.values()]
        assert countries == sorted(countries) and len(set(countries)) > 1
        await pilot.press("o")  # the reverse key
        await settle(pilot)
        with Workspace.open(segments_workspace, readonly=True) as ws:
            last = ws.conn.execute("SELECT max(json_extract(attributes, '$.country')) "
                                   "FROM users").fetchone()[0]
        assert users.descending and table.row_at_cursor().attribute == last


async def test_users_filter_keys_take_the_highlighted_row(segments_workspace):
    app = make_app(segments_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        users = app.screen
        table = users.query_one(UsersTable)
        top = table.row_at_cursor()  # most events: the top customer, in GIFT
        assert top.segment == GIFT
        await pilot.press("g")
        await settle(pilot)
        assert users.segment == GIFT and users.total == 3
        await pilot.press("f")
        await settle(pilot)
        assert users.attribute == top.attribute
        line = _text(users.query_one(FilterLine))
        assert f"segment = {GIFT!r}" in line and f"country = {top.attribute!r}" in line
        assert all(r.attribute == top.attribute and r.segment == GIFT
                   for r in table.rows_by_key.values())
        await pilot.press("g")  # again: any segment, the country stays
        await settle(pilot)
        assert users.segment is None and users.attribute == top.attribute
        with Workspace.open(segments_workspace, readonly=True) as ws:
            same_country = ws.conn.execute(
                "SELECT count(*) FROM users WHERE json_extract(attributes, '$.country') = ?",
                (top.attribute,)).fetchone()[0]
        assert users.total == same_country


async def test_segment_export_key_writes_the_segments_recommendations(segments_workspace,
                                                                       tmp_path):
    app = make_app(segments_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        app.screen.export_dir = tmp_path
        await pilot.press("w")
        await settle(pilot)
    out = tmp_path / default_export_name(GIFT)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    with Workspace.open(segments_workspace, readonly=True) as ws:
        members = {e for (e,) in ws.conn.execute(
            "SELECT external_id FROM user_stats WHERE segment = ?", (GIFT,))}
    assert rows and {r["user_id"] for r in rows} == members
    assert out.name == "recommendations-gift-shop-wholesaler.csv"


async def test_segments_without_profiles_say_how_to_make_them(plain_workspace):
    app = make_app(plain_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        screen = app.screen
        empty = screen.query_one("#no-segments")
        assert not empty.has_class("hidden") and _text(empty) == NO_PROFILES
        assert screen.query_one("#segments-body").has_class("hidden")
        assert "0 segments · 200 of 200 customers have no profile" in \
            _text(screen.query_one("#segments-summary"))
        await pilot.press("enter", "w")  # nothing to open or export: no error
        await settle(pilot)
        assert isinstance(app.screen, SegmentsScreen)
