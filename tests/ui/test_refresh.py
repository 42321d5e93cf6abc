"""Screens stay current (#13 item 6): what a finished job changed reaches every screen the app
holds through one `WorkspaceChanged` message, with the real jobs on the demo slice.

- a training started from the Training screen finishes while a customer is open: the open
  customer's recommendations appear without opening anyone again;
- the real demo build (a child process): Home and the Users screen (hidden) count the imported
  customers as soon as the import has landed, and "Profiles N made" follows the profiles being
  committed, before the phase ends.
"""

from __future__ import annotations

import time

from textual.widgets import DataTable, TabbedContent

from dynllm_tui.app import WorkbenchApp
from dynllm_tui.ui.common.workspace_changed import Change
from dynllm_tui.ui.config import UiConfig
from dynllm_tui.ui.formatting import NO_RUN
from dynllm_tui.ui.home.home_screen import HomeScreen, phase_change
from dynllm_tui.ui.user_detail.user_detail_screen import UserDetailScreen
from dynllm_tui.ui.users.users_screen import UsersScreen
from tests.ui.conftest import make_app, open_most_active_user, settle
from tests.ui.test_app import text
from tests.ui.test_second_instance import hold_lock

SIZE = (110, 32)


async def wait_for(pilot, condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


def test_a_change_of_an_unknown_kind_is_refused_by_name():
    try:
        Change("nonsense")
    except ValueError as exc:
        assert "unknown workspace change 'nonsense'" in str(exc)
    else:
        raise AssertionError("an unknown kind was accepted")


def test_each_demo_phase_that_ends_says_what_it_changed():
    # The importer names its own steps; whichever ended, the data is an import's.
    assert [phase_change(p) for p in ("reading", "indexing", "committing", "import")] == \
        ["import"] * 4
    assert [phase_change(p) for p in ("item embeddings", "taxonomy names", "profiles",
                                      "embeddings")] == ["profiles"] * 4
    # A run is usable only when the build ends (which posts "run" itself).
    assert [phase_change(p) for p in ("train", "test", "replay", None)] == [None] * 4


async def test_a_training_in_another_process_reaches_every_screen(ui_workspace):
    """The app's one lock watch (no screen polls): Home, on display, and Training, hidden,
    both say so when another process starts training, and both stop saying so when it ends."""
    app = make_app(ui_workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        training = app.screen
        await pilot.press("1")
        await settle(pilot)
        home = app.screen
        assert "another process" not in text(home.query_one("#pipeline"))
        other = hold_lock(ui_workspace)
        try:
            app.poll_training_lock()  # what the app's 2-second timer does
            await settle(pilot)
            assert f"in another process (pid {other.pid}" in text(home.query_one("#pipeline"))
            assert f"in another process (pid {other.pid}" in text(
                training.query_one("#train-status"))
        finally:
            other.kill()
            other.wait()
        app.poll_training_lock()
        await settle(pilot)
        assert "another process" not in text(home.query_one("#pipeline"))
        assert "another process" not in text(training.query_one("#train-status"))


async def test_the_open_customer_shows_the_run_as_soon_as_it_is_done(demo_workspace):
    app = WorkbenchApp(str(demo_workspace), config=UiConfig())
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_most_active_user(pilot)
        assert isinstance(detail, UserDetailScreen)
        detail.query_one(TabbedContent).active = "recs"  # the All list
        await settle(pilot)
        assert NO_RUN in text(detail.query_one("#no-recs"))
        # Train one cheap epoch from the Training screen (the real job, in a child process).
        await pilot.press("4")
        await settle(pilot)
        training = app.screen
        training.query_one("#epochs").value = "1"
        training.query_one("#no_profiles").value = True
        await pilot.pause()
        await pilot.press("ctrl+s")
        assert training.running
        await pilot.press("2")  # back to the open customer while it trains
        await wait_for(pilot, lambda: app.screen is detail, 10, "the customer again")
        await wait_for(pilot, lambda: not training.running, 180, "the end of the training")
        # No key pressed since: the message alone brings the run's lists.
        await wait_for(pilot, lambda: detail.detail is not None and detail.detail.run
                       is not None, 20, "the run on the open customer")
        await pilot.pause(0.2)
        assert app.screen is detail and detail.query_one(TabbedContent).active == "recs"
        table = detail.query_one("#recs-table", DataTable)
        assert table.row_count == len(detail.detail.lists["all"]) > 0
        assert detail.query_one("#no-recs").has_class("hidden")


def profiles_made(home: HomeScreen) -> int:
    """The N of "Profiles N made" on Home's pipeline panel."""
    shown = text(home.query_one("#pipeline"))
    return int(shown.split("Profiles ")[1].split(" made")[0].replace(",", ""))


async def test_home_and_hidden_users_follow_the_real_demo_build(tmp_path):
    app = WorkbenchApp(str(tmp_path / "demo.db"), config=UiConfig(),
                       # The LLM writer: its profiles come one by one, about a second apart,
                       # so the count is seen to move while the phase runs.
                       demo_options={"profile_limit": 3, "epochs": 1, "writer": "llm"})
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")  # Users, empty: it stays mounted in its mode
        await settle(pilot)
        users = app.screen
        assert isinstance(users, UsersScreen) and users.total == 0
        await pilot.press("1")
        await settle(pilot)
        home = app.screen
        assert isinstance(home, HomeScreen) and home.empty
        await pilot.press("d")  # the real `dynllm-tui demo --no-open` child
        await wait_for(pilot, lambda: "200 users" in text(home.query_one("#summary")), 120,
                       "Home's summary after the import")
        # Users was not shown again, yet it has reloaded too.
        await wait_for(pilot, lambda: users.total == 200, 20, "the hidden Users screen")
        # Profiles are committed one by one: the count moves while the phase runs.
        await wait_for(pilot, lambda: home.demo_phase == "profiles"
                       and profiles_made(home) >= 1, 240,
                       "a profile counted during the profiles phase")
        assert home.demo_phase == "profiles", home.demo_phase
        await pilot.press("c")
        await wait_for(pilot, lambda: not home.demo_running, 120, "the stopped build")
