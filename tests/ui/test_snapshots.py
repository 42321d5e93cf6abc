"""Snapshots (pytest-textual-snapshot) of Home, Users and User detail at 80x24, on the demo
workspace with a deterministic run and profiles (tests/ui/conftest.py). After an intended change
of the screens, review and refresh them with `pytest tests/ui --snapshot-update`."""

from __future__ import annotations

from tests.ui.conftest import make_app, settle

SIZE = (80, 24)


async def _settled(pilot) -> None:
    await settle(pilot)


def test_home(snap_compare, ui_workspace):
    assert snap_compare(make_app(ui_workspace), terminal_size=SIZE, run_before=_settled)


def test_home_empty_workspace(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path / "ws.db"), terminal_size=SIZE, run_before=_settled)


def test_users(snap_compare, ui_workspace):
    async def open_users(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)

    assert snap_compare(make_app(ui_workspace), terminal_size=SIZE, run_before=open_users)


def test_user_detail_timeline(snap_compare, ui_workspace):
    async def open_user(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)

    assert snap_compare(make_app(ui_workspace), terminal_size=SIZE, run_before=open_user)


def test_user_detail_facet_weights(snap_compare, ui_workspace):
    async def open_weights(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("n", "n", "n")
        await settle(pilot)

    assert snap_compare(make_app(ui_workspace), terminal_size=SIZE, run_before=open_weights)


def test_user_detail_discover_with_reasons(snap_compare, ui_workspace):
    """The Discover list of the top customer with the reason column and the line that spells
    out the reason of the row under the cursor."""
    from tests.ui.recommendation_lists import add_lists

    add_lists(ui_workspace)

    async def open_discover(pilot) -> None:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("l", "l")  # buy again, then discover
        await settle(pilot)

    assert snap_compare(make_app(ui_workspace), terminal_size=(110, 32),
                        run_before=open_discover)


def test_segments(snap_compare, ui_workspace):
    """Segments: the table (users, share, repeat share, mean facet weights) and the highlighted
    segment's detail with its most recommended buy-again and discover items."""
    from tests.ui.recommendation_lists import add_lists
    from tests.ui.segments_workspace import add_segment_profiles

    add_lists(ui_workspace)
    add_segment_profiles(ui_workspace)

    async def open_segments(pilot) -> None:
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("down")
        await settle(pilot)

    assert snap_compare(make_app(ui_workspace), terminal_size=(110, 32),
                        run_before=open_segments)
