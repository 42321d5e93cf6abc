"""The Textual app. A thin layer: screens call headless queries (`storage.browse`) and jobs from
thread workers, never SQL or torch on the UI thread.

Sections are Textual modes, each with its own screen stack (Users keeps its place while a user's
detail is open on top of it). Key bindings come from `dynllm_tui.ui.keys` and can be remapped in
the config file (`dynllm_tui.ui.config`).
"""

from __future__ import annotations

import gc
import os
import sqlite3
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from dynllm_tui.jobs.training_lock import training_in_progress
from dynllm_tui.ui.common.workspace_changed import Change, WorkspaceChanged
from dynllm_tui.ui.config import UiConfig, load_config
from dynllm_tui.ui.home.home_screen import HomeScreen
from dynllm_tui.ui.keys import KEYS, bindings, effective_keys
from dynllm_tui.ui.reader import WorkspaceReader
from storage.errors import DynllmError, sqlite_error
from storage.workspace import default_workspace_path

LOCK_POLL_S = 2.0  # how often the app looks whether a training started or ended (any process)


# The sections other than Home are imported when first opened, not at start: the first screen
# is Home, and the others' modules (Training's plots pull in plotext, Users, Runs, Segments and
# the browse queries behind them) were about a third of the app's import time (bench/ui.py).
def _users_screen() -> Screen:
    from dynllm_tui.ui.users.users_screen import UsersScreen

    return UsersScreen()


def _runs_screen() -> Screen:
    from dynllm_tui.ui.runs.runs_screen import RunsScreen

    return RunsScreen()


def _training_screen() -> Screen:
    from dynllm_tui.ui.training.training_screen import TrainingScreen

    return TrainingScreen()


def _segments_screen() -> Screen:
    from dynllm_tui.ui.segments.segments_screen import SegmentsScreen

    return SegmentsScreen()


class WorkbenchApp(App[None]):
    """The workbench: Home, Users (and a user's detail), Runs, Training; Export and Help on top."""

    TITLE = "dynllm-tui"
    BINDINGS = bindings("app")
    MODES = {"home": HomeScreen, "users": _users_screen, "runs": _runs_screen,
             "training": _training_screen, "segments": _segments_screen}
    DEFAULT_MODE = "home"
    CSS = """
    Screen { layers: base overlay; }
    DataTable { scrollbar-size-vertical: 1; }
    """

    def __init__(self, db: str | None = None, config: UiConfig | None = None, *,
                 build_demo: bool = False, demo_options: dict[str, Any] | None = None,
                 reader: WorkspaceReader | None = None) -> None:
        """`build_demo`: start building the demo workspace in `db` as soon as Home shows (what
        `dynllm-tui demo` does, so the app opens at once and fills in as the build goes);
        `demo_options`: extra keyword arguments of `jobs.demo.demo_job` (epochs, profile_limit);
        `reader`: the shared reader of `db` when the caller made it already (the command starts
        Home's queries on it before importing the app: `cli._open_app`)."""
        super().__init__()
        self.db = db
        self.config = config if config is not None else load_config()
        self.reader = reader if reader is not None else WorkspaceReader(db)
        self.users_search = ""  # the Users screen's current search (export "search result")
        # (segment, attribute) filters another screen asks Users to show (Segments' Enter).
        self.users_filter_request: tuple[str | None, str | None] | None = None
        self.workspace_name = Path(db).name if db else ""
        self._background_jobs = 0
        self.build_demo_on_start = build_demo
        self.demo_options: dict[str, Any] = dict(demo_options or {})
        # The workspace's path as jobs and the training lock name it, known without opening
        # it (the UI thread must not wait on the reader's connection).
        self.db_path = str(Path(db).expanduser() if db else default_workspace_path())
        self._lock_seen: str | None = None  # the training lock holder's start time, if held

    # --- start and stop -----------------------------------------------------------------

    def on_mount(self) -> None:
        self.set_keymap(self.config.keymap)
        for name in (self.config.dark_theme, self.config.light_theme):
            if name not in self.available_themes:
                self.config.warnings.append(f"unknown theme {name!r}: using the default")
        if self.config.dark_theme not in self.available_themes:
            self.config.dark_theme = "textual-dark"
        if self.config.light_theme not in self.available_themes:
            self.config.light_theme = "textual-light"
        self.theme = self.config.start_theme
        for warning in self.config.warnings:
            self.notify(warning, title="Config", severity="warning", timeout=10)
        # The one timer that watches for changes: a training started or ended here or in
        # another process (which cannot post us a message). Screens themselves never poll.
        self._lock_seen = (training_in_progress(self.db_path) or {}).get("started_at")
        self.set_interval(LOCK_POLL_S, self.poll_training_lock)

    def on_unmount(self) -> None:
        self.reader.close()
        if self._background_jobs:
            self._background_jobs = 0
            gc.unfreeze()

    # --- keys ---------------------------------------------------------------------------

    def key_display(self, binding_id: str) -> str:
        """The key in force for a binding id, as the footer writes it ('?' not 'question_mark')."""
        keys = effective_keys(self._keymap)[binding_id].split(",")[0]
        return self.get_key_display(Binding(keys, ""))

    # --- actions ------------------------------------------------------------------------

    def action_go(self, mode: str) -> None:
        if isinstance(self.screen, Screen) and self.screen.is_modal:
            self.pop_screen()
        if self.current_mode != mode:
            self.switch_mode(mode)

    def open_users(self, *, segment: str | None = None, attribute: str | None = None) -> None:
        """Users showing only the customers of `segment` / with `attribute` (Segments' Enter):
        the request waits on the app until the Users screen shows (mounted or resumed)."""
        self.users_filter_request = (segment, attribute)
        self.action_go("users")
        while self.current_mode == "users" and len(self.screen_stack) > 1:
            self.pop_screen()  # a user's detail was open over Users: back to the list

    def action_export(self) -> None:
        from dynllm_tui.ui.export.export_modal import ExportModal
        from dynllm_tui.ui.users.users_screen import UsersScreen

        if isinstance(self.screen, ExportModal):
            return
        if self.screen.is_modal:
            self.pop_screen()
        user = getattr(self.screen, "external_id", None)
        self.push_screen(ExportModal(user=user, search=self.users_search,
                                     prefer_search=isinstance(self.screen, UsersScreen)))

    def action_help(self) -> None:
        from dynllm_tui.ui.help.help_screen import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        dark = self.theme == self.config.dark_theme or self.current_theme.dark
        self.theme = self.config.light_theme if dark else self.config.dark_theme

    def action_refresh_screen(self) -> None:
        refresh = getattr(self.screen, "refresh_data", None)
        if refresh is not None:
            refresh()

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """An SVG of the screen through Textual's own screenshot, saved in the workspace's
        folder (the current folder when that cannot be written); Textual notifies with the
        path once it is written. Served to a browser (`dynllm-tui serve`), it opens there."""
        self.deliver_screenshot(filename, path or str(self.screenshot_folder()))

    def screenshot_folder(self) -> Path:
        folder = Path(self.db_path).parent
        return folder if os.access(folder, os.W_OK) else Path.cwd()

    def background_job_started(self) -> None:
        """A long job (training, the demo build) runs in a child process and streams progress.
        Everything the app holds now is long-lived, so it is frozen out of the garbage collector
        meanwhile: a full collection would otherwise rescan Textual's caches (~150k objects,
        about 100 ms, measured by bench/ui.py) and freeze the UI in the middle of the job."""
        if self._background_jobs == 0:
            gc.freeze()
        self._background_jobs += 1

    def background_job_finished(self) -> None:
        self._background_jobs = max(0, self._background_jobs - 1)
        if self._background_jobs == 0:
            gc.unfreeze()

    def workspace_changed(self, kind: str, *, run_id: int | None = None,
                          user_ids: Iterable[int] = (),
                          holder: dict[str, Any] | None = None) -> None:
        """A job changed the workspace (`kind`: import, profiles, run, activate, training):
        tell every screen the app holds, shown or not, with one `WorkspaceChanged` message;
        each reloads what it shows if the change concerns it."""
        change = Change(kind, run_id, frozenset(user_ids), holder)
        for screen in self.workbench_screens():
            screen.post_message(WorkspaceChanged(change))

    def workbench_screens(self) -> list[Screen]:
        """Every screen mounted in the app: each mode's stack and the installed screens (the
        user detail that Users keeps for reuse), once each."""
        seen: dict[int, Screen] = {}
        candidates = [s for stack in self._screen_stacks.values() for s in stack]
        candidates += [s for s in self._installed_screens.values() if isinstance(s, Screen)]
        for screen in candidates:
            if screen.is_attached:
                seen.setdefault(id(screen), screen)
        return list(seen.values())

    def poll_training_lock(self) -> None:
        """A training started or ended (here or in another process): one non-blocking flock
        probe and a tiny read, cheap enough for the UI thread."""
        holder = training_in_progress(self.db_path)
        started = (holder or {}).get("started_at")
        if started != self._lock_seen:
            self._lock_seen = started
            self.workspace_changed("training", holder=holder)

    def show_error(self, title: str, exc: BaseException) -> None:
        """Errors from workers: one notification, never a crash."""
        if isinstance(exc, sqlite3.Error):  # e.g. a damaged page met by an export's own reads
            exc = sqlite_error(self.db_path, exc)
        if isinstance(exc, DynllmError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
            self.log.error(title, exc)
        self.notify(message, title=title, severity="error", timeout=10)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed outside its own error handling: still a message, not a crash."""
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.show_error("Background task", event.worker.error)

    # --- command palette ----------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every action of the app and of the screen the palette was opened on."""
        scope = getattr(screen, "SCOPE", "app")
        keys = effective_keys(self._keymap)
        for spec in KEYS:
            if not spec.palette or spec.scope not in ("app", scope):
                continue
            key = self.get_key_display(Binding(keys[spec.id].split(",")[0], ""))
            yield SystemCommand(spec.description, f"key {key} · {spec.id}",
                                partial(screen.run_action, spec.action))
        for command in super().get_system_commands(screen):
            # Ours are above, with their remappable keys (and the screenshot's folder).
            if command.title not in ("Quit", "Screenshot"):
                yield command
