"""The app opens on a real workspace and shows its summary (pilot test, no terminal needed)."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from dynllm_tui.app import WorkbenchApp


async def test_home_shows_the_workspace_summary(demo_workspace_file):
    app = WorkbenchApp(str(demo_workspace_file))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        summary = str(app.query_one("#summary", Static).render())
        assert "200 users" in summary and "interactions" in summary
        table = app.query_one("#imports", DataTable)
        assert table.row_count == 1
        assert table.get_row_at(0)[3] == "29,790"
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.press("q")


async def test_empty_workspace_says_what_to_do(tmp_path):
    app = WorkbenchApp(str(tmp_path / "empty.db"))
    async with app.run_test(size=(80, 24)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "dynllm-tui demo" in str(app.query_one("#summary", Static).render())
