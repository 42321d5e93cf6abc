"""Pilot tests (App.run_test, no terminal) of every screen on the real demo workspace, at the
smallest supported terminal (80x24).

Longer than our ~400-line mark on purpose: one file per app walk-through keeps the screens' tests
next to each other with one shared module-scoped workspace (built once, ~10 s)."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3

import pytest
from rich.console import Console
from textual.widgets import DataTable, Input, Select, Static, TabbedContent

from dynllm_tui.jobs import child_process as child_job
from dynllm_tui.jobs import demo as jobs
from dynllm_tui.ui.common.empty_state import EmptyState
from dynllm_tui.ui.export.export_modal import ExportModal
from dynllm_tui.ui.formatting import NO_PROFILE, NO_RUN
from dynllm_tui.ui.help.help_screen import HelpScreen
from dynllm_tui.ui.home.home_screen import HomeScreen
from dynllm_tui.ui.runs.runs_screen import RunsScreen
from dynllm_tui.ui.training.training_screen import TrainingScreen
from dynllm_tui.ui.user_detail import user_detail_screen
from dynllm_tui.ui.user_detail.user_detail_screen import UserDetailScreen
from dynllm_tui.ui.users.users_screen import UsersScreen
from dynllm_tui.ui.users.users_table import UsersTable
from storage.workspace import Workspace
from tests.ui.conftest import TOP_USER, add_run, add_unfinished_run, make_app, settle

SIZE = (80, 24)


def text(widget) -> str:
    """What a Static holds, as plain text with runs of spaces collapsed."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return " ".join(console.export_text().split())


def users_column(app, index: int = 0) -> list[str]:
    table = app.screen.query_one(UsersTable)
    return [str(table.get_row_at(i)[index]) for i in range(table.row_count)]


# --- Home -------------------------------------------------------------------------------


async def test_home_shows_summary_pipeline_and_imports(plain_workspace):
    app = make_app(plain_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        summary = text(app.screen.query_one("#summary"))
        assert "200 users" in summary and "28,085 interactions" in summary
        pipeline = text(app.screen.query_one("#pipeline"))
        # one of the 200 has fewer than 5 lines: below the snapshot threshold, not pending
        assert "199 users pending" in pipeline and "none yet" in pipeline
        assert "make profiles" in pipeline
        table = app.screen.query_one("#imports", DataTable)
        assert table.row_count == 1 and table.get_row_at(0)[3] == "29,790"
        await pilot.press("r")
        await settle(pilot)
        assert table.row_count == 1


async def test_home_lists_runs_with_test_metrics(ui_workspace):
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        pipeline = text(app.screen.query_one("#pipeline"))
        assert "#1 *" in pipeline and "0.1234" in pipeline and "2 made" in pipeline
        assert "1 failed" in pipeline and "browse users" in pipeline


@pytest.fixture
def import_only_demo(monkeypatch):
    """The demo build reduced to its import phase: the full build (LLM profiles, training) is
    the jobs' tests' business and takes minutes; these tests are about the UI around it."""
    def run_cli_job(args, db, on_event, cancel):  # stands in for the `demo --no-open` child
        assert args[:2] == ["demo", "--no-open"]
        jobs.import_job(db, jobs.demo_data_path(), preset="online-retail", cancel=cancel,
                        progress=lambda d, t, p: on_event(
                            {"event": "progress", "done": d, "total": t, "phase": p}))
        return {"run_id": None, "cancelled": False, "seconds": {}}

    monkeypatch.setattr(child_job, "run_cli_job", run_cli_job)


async def test_empty_workspace_builds_the_demo_in_one_key(tmp_path, import_only_demo):
    app = make_app(tmp_path / "empty.db")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "This workspace is empty" in text(app.screen.query_one("#summary"))
        assert "Press d" in text(app.screen.query_one("#summary"))
        await pilot.press("d")
        await settle(pilot)
        assert "200 users" in text(app.screen.query_one("#summary"))
        assert not app.screen.check_action("build_demo", ())


# --- navigation, help, theme, palette, config --------------------------------------------


async def test_number_keys_switch_sections(plain_workspace):
    app = make_app(plain_workspace)
    async with app.run_test(size=SIZE) as pilot:
        for key, screen in (("2", UsersScreen), ("3", RunsScreen), ("4", TrainingScreen),
                            ("1", HomeScreen)):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, screen), key
        await pilot.press("4")
        await settle(pilot)
        assert "start with ^s" in text(app.screen.query_one("#train-status"))


async def test_help_lists_the_keys_in_force(plain_workspace):
    app = make_app(plain_workspace, keymap={"export": "x"})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = app.screen.query_one("#help-keys", Static)
        rendered = app.screen.render_keys()
        assert keys is not None and rendered.row_count > 20
        cells = [str(c) for column in rendered.columns for c in column._cells]
        assert "x" in cells and "Export  [dim]export[/dim]" in cells
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)


async def test_remapped_key_opens_export_and_theme_toggles(plain_workspace):
    app = make_app(plain_workspace, keymap={"export": "x"})
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("e")
        assert not isinstance(app.screen, ExportModal)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, ExportModal)
        await pilot.press("escape")
        assert app.theme == "textual-dark"
        await pilot.press("t")
        assert app.theme == "textual-light"
        await pilot.press("t")
        assert app.theme == "textual-dark"


async def test_config_problems_are_shown_not_fatal(plain_workspace):
    app = make_app(plain_workspace, warnings=["[keys] 'nope' is not a binding id (see ?)"],
                   dark_theme="no-such-theme")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        messages = [n.message for n in app._notifications]
        assert any("nope" in m for m in messages)
        assert any("no-such-theme" in m for m in messages)
        assert app.theme == "textual-dark"


async def test_command_palette_offers_every_action(plain_workspace):
    app = make_app(plain_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for title in ("Home", "Users", "Runs", "Training", "Export", "Help", "Dark/light theme",
                      "Refresh", "Quit", "Search", "Sort", "Reverse", "Open"):
            assert title in titles
        assert "Make active" not in titles  # a Runs action, not offered on Users
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Runs")
        await command.callback()
        await settle(pilot)
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert app.screen.__class__.__name__ == "CommandPalette"


async def test_a_broken_workspace_is_reported_not_fatal(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("not a database")
    app = make_app(bad)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors and "not an SQLite database" in errors[0].message
        assert app.is_running


# --- Users ------------------------------------------------------------------------------


async def test_users_search_and_sort(plain_workspace):
    app = make_app(plain_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        screen = app.screen
        assert users_column(app)[0] == TOP_USER and screen.total == 200
        await pilot.press("slash")
        assert isinstance(screen.focused, Input)
        await pilot.press(*"germany")
        await pilot.press("enter")
        await settle(pilot)
        assert screen.total == 6 and set(users_column(app, 1)) == {"Germany"}
        assert "6 users matching 'germany'" in text(screen.query_one("#status"))
        assert app.users_search == "germany"
        await pilot.press("escape")
        await settle(pilot)
        assert screen.total == 200
        await pilot.press("s")  # events -> last purchase, newest first
        await settle(pilot)
        lasts = users_column(app, 4)
        assert screen.sort == "last" and lasts == sorted(lasts, reverse=True)
        await pilot.press("o")
        await settle(pilot)
        lasts = users_column(app, 4)
        assert not screen.descending and lasts == sorted(lasts)
        await pilot.press("s", "s")  # first purchase, then customer id
        await settle(pilot)
        ids = users_column(app, 0)
        assert screen.sort == "id" and ids == sorted(ids)


async def test_users_load_page_by_page(tmp_path):
    """5,000 users: the table starts with one page and grows as the cursor nears its end."""
    db = tmp_path / "many.db"
    with Workspace.open(db) as ws, ws.transaction() as conn:
        conn.execute("INSERT INTO imports (id, file, sha256, preset, rows_read, rows_kept) "
                     "VALUES (1, 'synthetic', 'x', 'generic', 0, 0)")
        conn.executemany("INSERT INTO users (id, external_id, attributes, import_id) "
                         "VALUES (?, ?, '{\"country\": \"X\"}', 1)",
                         [(i, f"C{i:05d}") for i in range(1, 5001)])
        conn.execute("INSERT INTO items (id, external_id, title, import_id) "
                     "VALUES (1, 'I1', 'ITEM', 1)")
        conn.executemany("INSERT INTO interactions (user_id, item_id, ts, import_id) "
                         "VALUES (?, 1, ?, 1)",
                         [(1 + (j * 7919) % 5000, 1_300_000_000 + j) for j in range(20_000)])
    app = make_app(db)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        table = app.screen.query_one(UsersTable)
        assert app.screen.total == 5000 and table.row_count == 100
        await pilot.press("end")
        await settle(pilot)
        assert table.row_count == 200
        for _ in range(3):
            await pilot.press("end")
            await settle(pilot)
        assert table.row_count == 500
        events = users_column(app, 2)
        assert [int(e.replace(",", "")) for e in events] == sorted(
            (int(e.replace(",", "")) for e in events), reverse=True)


# --- User detail ------------------------------------------------------------------------


async def test_user_detail_with_a_run(ui_workspace, monkeypatch):
    monkeypatch.setattr(user_detail_screen, "TIMELINE_PAGE", 150)  # page through sooner
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, UserDetailScreen) and screen.external_id == TOP_USER
        header = text(screen.query_one("#user-header"))
        assert "Customer 14911" in header and "EIRE" in header and "run #1" in header
        assert "Irish wholesale gift buyer" in header
        timeline = screen.query_one("#timeline-table", DataTable)
        assert timeline.row_count == 100  # the newest 100 of 2,882; more as the cursor goes
        newest = timeline.get_row_at(0)[0]
        tabs = screen.query_one(TabbedContent)
        await pilot.press("n")
        assert tabs.active == "profile"
        select = screen.query_one("#snapshot", Select)
        assert select.value == 2
        assert "christmas decorations" in text(screen.query_one("#facets"))
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert select.value == 1 and "failed" in text(screen.query_one("#facets"))
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert select.value == 2
        await pilot.press("n")
        assert tabs.active == "recs"
        recs = screen.query_one("#recs-table", DataTable)
        assert recs.row_count == 10
        flags = {str(recs.get_row_at(i)[4]) for i in range(10)}
        assert flags == {"yes", "new"}
        await pilot.press("n")
        assert tabs.active == "weights"
        bars = text(screen.query_one("#bars"))
        assert "crowd segment" in bars and "run #1" in bars
        assert screen.query_one("#evolution").display
        await pilot.press("n")
        assert tabs.active == "memory"
        await pilot.pause()
        assert screen.query_one("#memory-plots").display
        assert not screen.query_one("#no-memory").display
        await pilot.press("p", "p", "p", "p")
        assert tabs.active == "timeline"
        timeline.focus()
        for _ in range(3):  # the rest of the first page, then pages from the workspace
            await pilot.press("end")
            await settle(pilot)
        assert timeline.row_count >= 250 and len(timeline.events) >= 300
        times = [timeline.get_row_at(i)[0] for i in range(timeline.row_count)]
        assert times[0] == newest and times == sorted(times, reverse=True)
        await pilot.press("escape")
        assert isinstance(app.screen, UsersScreen)


async def test_user_detail_says_what_to_do_without_run_or_profile(plain_workspace):
    app = make_app(plain_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, UserDetailScreen)
        assert "no run yet" in text(screen.query_one("#user-header"))
        shown = []
        for _ in range(4):  # profile, top 10, facet weights, memory
            await pilot.press("n")
            await settle(pilot)
            pane = screen.query_one(TabbedContent).active_pane
            shown += [text(e) for e in pane.query(EmptyState) if e.display]
        assert shown == [NO_PROFILE, NO_RUN, NO_RUN, NO_RUN]
        assert not screen.query_one("#recs-table", DataTable).display
        assert not screen.query_one("#memory-plots").display


# --- Runs -------------------------------------------------------------------------------


async def test_runs_empty_state(plain_workspace):
    app = make_app(plain_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        assert NO_RUN in text(app.screen.query_one("#no-runs"))
        assert app.screen.query_one("#no-runs").display
        assert not app.screen.check_action("activate", ())


async def test_runs_choose_the_active_run(ui_workspace):
    add_run(ui_workspace, run_id=2, active=False)
    add_unfinished_run(ui_workspace, 3, "failed", "NaN loss at batch 7")
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#runs", DataTable)
        assert table.row_count == 3 and str(table.get_row_at(2)[0]) == "#1 *"
        assert "NaN loss" in text(app.screen.query_one("#run-config"))
        await pilot.press("a")  # the failed run: refused, shown, no crash
        await settle(pilot)
        assert any("not finished" in n.message for n in app._notifications)
        await pilot.press("down")
        await pilot.pause()
        assert "Run #2" in app.screen.query_one("#report").border_title
        report = app.screen.query_one("#report DataTable", DataTable)
        assert report.row_count == 4
        await pilot.press("a")
        await settle(pilot)
        assert str(table.get_row_at(1)[0]) == "#2 *", [n.message for n in app._notifications]
    with Workspace.open(ui_workspace) as ws:
        assert ws.conn.execute("SELECT id FROM runs WHERE active = 1").fetchall() == [(2,)]


async def test_runs_show_a_run_left_running_by_a_killed_process_as_interrupted(ui_workspace):
    add_unfinished_run(ui_workspace, 2, "running")
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#runs", DataTable)
        statuses = {str(table.get_row_at(i)[0]): str(table.get_row_at(i)[1])
                    for i in range(table.row_count)}
        assert statuses == {"#1 *": "done", "#2": "interrupted"}


# --- Export -----------------------------------------------------------------------------


async def _export(pilot, path, **fields) -> None:
    modal = pilot.app.screen
    assert isinstance(modal, ExportModal)
    for name, value in fields.items():
        widget = modal.query_one(f"#{name}")
        widget.value = value
    await pilot.pause()
    modal.query_one("#path", Input).value = str(path)
    await pilot.press("ctrl+s")
    await settle(pilot)


def _read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


async def test_export_one_user_from_the_detail_screen(ui_workspace, tmp_path):
    out = tmp_path / "one.csv"
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        modal = app.screen
        assert modal.query_one("#scope", Select).value == "user"
        assert modal.query_one("#user", Input).value == TOP_USER
        await _export(pilot, out, k="5")
        assert isinstance(app.screen, UserDetailScreen)  # closed after writing
        assert any("wrote 5 rows" in n.message for n in app._notifications)
    rows = _read(out)
    assert rows[0][:3] == ["user_id", "rank", "item_id"]
    assert [r[0] for r in rows[1:]] == [TOP_USER] * 5 and [r[1] for r in rows[1:]] == [
        "1", "2", "3", "4", "5"]


async def test_export_all_search_and_facets(ui_workspace, tmp_path):
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await pilot.pause()
        assert app.screen.query_one("#scope", Select).value == "all"
        await _export(pilot, tmp_path / "all.csv")
        await pilot.press("2", "slash", *"eire", "enter")
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        assert app.screen.query_one("#scope", Select).value == "search"
        await _export(pilot, tmp_path / "eire.csv", k="3")
        await pilot.press("e")
        await pilot.pause()
        await _export(pilot, tmp_path / "facets.csv", what="facets", scope="all")
    all_rows = _read(tmp_path / "all.csv")
    assert len(all_rows) == 1 + 5 * 10 and len({r[0] for r in all_rows[1:]}) == 5
    eire = _read(tmp_path / "eire.csv")
    assert {r[0] for r in eire[1:]} == {TOP_USER} and len(eire) == 4  # one EIRE user in the run
    facets = _read(tmp_path / "facets.csv")
    assert facets[0] == ["user_id", "as_of", "crowd_segment", "interests", "categories",
                         "brands"]
    assert len(facets) > 100


async def test_export_errors_stay_in_the_dialog(ui_workspace, plain_workspace, tmp_path):
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await pilot.pause()
        await _export(pilot, tmp_path / "missing" / "recs.csv")
        modal = app.screen
        assert isinstance(modal, ExportModal)  # still open, with the reason
        assert "does not exist" in text(modal.query_one("#export-status"))
        assert any(n.severity == "error" for n in app._notifications)
        await _export(pilot, tmp_path / "x.csv", scope="user", user="no-such-customer")
        assert "unknown user id" in text(modal.query_one("#export-status"))
        assert list(tmp_path.glob("*.csv")) == [] and not (tmp_path / "missing").exists()
    app = make_app(plain_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await pilot.pause()
        await _export(pilot, tmp_path / "recs.csv")
        assert "train one first" in text(app.screen.query_one("#export-status"))
        await pilot.press("escape")
        assert isinstance(app.screen, HomeScreen)
    assert not (tmp_path / "recs.csv").exists()


async def test_second_instance_reads_while_the_first_writes(ui_workspace, tmp_path):
    """Another process holding a write transaction (training) does not freeze browsing."""
    copy = tmp_path / "copy.db"
    shutil.copy(ui_workspace, copy)
    writer = sqlite3.connect(copy, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO runs (created_at, status, config) VALUES ('x', 'running', ?)",
                   (json.dumps({}),))
    try:
        app = make_app(copy)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert "#1 *" in text(app.screen.query_one("#pipeline"))
            await pilot.press("2")
            await settle(pilot)
            assert app.screen.total == 200
    finally:
        writer.execute("ROLLBACK")
        writer.close()


async def test_users_pick_up_new_data_when_shown_again(tmp_path, import_only_demo):
    """Users seen before the demo was built show the new users when visited again."""
    app = make_app(tmp_path / "empty.db")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert app.screen.total == 0
        await pilot.press("1", "d")
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        assert app.screen.total == 200 and users_column(app)[0] == TOP_USER
