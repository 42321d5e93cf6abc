"""What analysts expect of a Textual app (#13 item 7): a screenshot key and palette entry that
write an SVG of the screen, and the copy key that puts the recommendations list shown on the
clipboard as TSV."""

from __future__ import annotations

import time
from pathlib import Path

from dynllm_tui.ui.common.clipboard import RECOMMENDATION_COLUMNS, recommendations_tsv, rows_tsv
from dynllm_tui.ui.formatting import NO_RUN
from dynllm_tui.ui.user_detail.user_detail_screen import TOP_K, UserDetailScreen
from storage.browse import HEADLINE_METRICS, Recommendation
from tests.ui.conftest import add_unfinished_run, make_app, open_most_active_user, settle
from tests.ui.recommendation_lists import add_lists

SIZE = (110, 32)


async def wait_for_file(pilot, folder: Path, pattern: str, timeout: float = 10) -> list[Path]:
    deadline = time.monotonic() + timeout
    while not (found := sorted(folder.glob(pattern))):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern} in {folder}: {sorted(folder.iterdir())}")
        await pilot.pause(0.05)
    await pilot.pause(0.2)  # the writer thread closes the file
    return found


def notifications(app) -> list[str]:
    return [n.message for n in app._notifications]


def test_tsv_keeps_one_line_per_row_whatever_the_text():
    rows = [Recommendation(1, "85123A", "WHITE\tHANGING\nHEART", 2.5, True, "bought 3 times"),
            Recommendation(2, "22423", None, 1.25, False, None)]
    text = recommendations_tsv(rows)
    lines = text.splitlines()
    assert lines[0].split("\t") == list(RECOMMENDATION_COLUMNS)
    assert lines[1].split("\t") == ["1", "85123A", "WHITE HANGING HEART", "2.5", "yes",
                                    "bought 3 times"]
    assert lines[2].split("\t") == ["2", "22423", "", "1.25", "no", ""]
    assert rows_tsv(("a",), []) == "a\n"


async def test_screenshot_key_writes_an_svg_of_the_screen_beside_the_workspace(ui_workspace):
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("f12")
        (svg,) = await wait_for_file(pilot, ui_workspace.parent, "*.svg")
        content = svg.read_text(encoding="utf-8")
        assert content.lstrip().startswith("<svg") and content.rstrip().endswith("</svg>")
        # The screen's text is in it (Rich writes spaces as &#160;).
        flat = content.replace("&#160;", " ")
        assert "Pipeline" in flat and "Workspace" in flat
        await pilot.pause(0.2)
        assert any(str(svg) in m for m in notifications(app)), notifications(app)


async def test_screenshot_from_the_command_palette(ui_workspace):
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("3")  # Runs
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"screenshot")
        await pilot.pause(0.3)
        await pilot.press("enter")
        (svg,) = await wait_for_file(pilot, ui_workspace.parent, "*.svg")
        assert "#1" in svg.read_text(encoding="utf-8").replace("&#160;", " ")


async def test_copy_key_puts_the_list_shown_on_the_clipboard(ui_workspace):
    add_lists(ui_workspace)
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_most_active_user(pilot)
        assert isinstance(detail, UserDetailScreen)
        await pilot.press("l")  # the Top tab, on the Buy again list
        await settle(pilot)
        await pilot.press("y")
        await pilot.pause()
        lines = app.clipboard.splitlines()
        shown = detail.detail.lists["buy-again"]
        assert lines[0].split("\t") == list(RECOMMENDATION_COLUMNS)
        assert len(lines) == len(shown) + 1 and len(shown) > 0
        assert [line.split("\t")[1] for line in lines[1:]] == [r.item_key for r in shown]
        assert all(line.split("\t")[4] == "yes" for line in lines[1:])
        assert [line.split("\t")[5] for line in lines[1:]] == [r.reason for r in shown]
        assert any(f"Copied {len(shown)} lines (Buy again" in m for m in notifications(app))
        await pilot.press("l")  # Discover
        await settle(pilot)
        await pilot.press("y")
        await pilot.pause()
        discover = detail.detail.lists["discover"]
        assert [line.split("\t")[1] for line in app.clipboard.splitlines()[1:]] == \
            [r.item_key for r in discover]


async def test_copy_of_a_list_an_old_run_never_stored_says_so(ui_workspace):
    app = make_app(ui_workspace)  # the run has the combined list only, as before #13
    async with app.run_test(size=SIZE) as pilot:
        await open_most_active_user(pilot)
        await pilot.press("l", "y")  # Buy again: not stored
        await pilot.pause()
        assert app.clipboard == ""
        assert any(m.startswith("Nothing copied: Run #1") for m in notifications(app)), \
            notifications(app)
        await pilot.press("l", "l", "y")  # back on All: the combined list is there
        await pilot.pause()
        assert len(app.clipboard.splitlines()) == 1 + TOP_K  # what the tab shows


async def test_copy_key_on_runs_puts_the_runs_table_on_the_clipboard(ui_workspace):
    add_unfinished_run(ui_workspace, 2, "failed", "out of memory")
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("y")
        await pilot.pause()
        lines = [line.split("\t") for line in app.clipboard.splitlines()]
        assert lines[0][:6] == ["run", "active", "status", "finished", "epochs", "device"]
        assert lines[0][6:] == list(HEADLINE_METRICS)
        by_run = {row[0]: row for row in lines[1:]}
        assert set(by_run) == {"1", "2"}
        assert by_run["1"][1:3] == ["yes", "done"] and by_run["1"][6] == "0.1234"
        assert by_run["2"][1:3] == ["no", "failed"] and by_run["2"][6] == ""
        assert any(m.startswith("Copied 2 runs as TSV") for m in notifications(app))


async def test_copy_without_a_run_says_why_and_copies_nothing(plain_workspace):
    app = make_app(plain_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_most_active_user(pilot)
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == ""
        assert any(m == f"Nothing copied: {NO_RUN}" for m in notifications(app))
        await pilot.press("3", "y")  # Runs, empty
        await pilot.pause()
        assert app.clipboard == ""
        assert sum(m == f"Nothing copied: {NO_RUN}" for m in notifications(app)) == 2
