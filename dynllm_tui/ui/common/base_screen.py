"""What every workbench screen shares: the nav bar and footer, the shared workspace reader, and
the way results and errors come back from thread workers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer

from dynllm_tui.ui.common.nav_bar import NavBar
from dynllm_tui.ui.common.workbench import Workbench
from dynllm_tui.ui.common.workspace_changed import Change, WorkspaceChanged


class WorkerResults:
    """For screens (and modals): run queries in thread workers, hand results and errors back."""

    app: Any
    is_attached: bool

    @property
    def workbench(self) -> Workbench:
        return self.app  # type: ignore[return-value]

    def fetch(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a `storage.browse` query on the shared read connection (worker threads only)."""
        return self.workbench.reader.call(fn, *args, **kwargs)

    def deliver(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Hand a worker's result to `fn` on the UI thread, unless the screen has gone."""
        try:
            self.app.call_from_thread(self._deliver, fn, *args, **kwargs)
        except RuntimeError:  # the app is shutting down
            pass

    def _deliver(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not self.is_attached:
            return
        try:
            fn(*args, **kwargs)
        except NoMatches:  # the screen was being torn down
            pass

    def fail(self, title: str, exc: BaseException) -> None:
        """Report a worker's error (from the worker thread): one notification, no crash."""
        try:
            self.app.call_from_thread(self.workbench.show_error, title, exc)
        except RuntimeError:
            pass


class WorkbenchScreen(WorkerResults, Screen):
    SCOPE: ClassVar[str] = "app"
    SECTION: ClassVar[str] = "home"

    def compose(self) -> ComposeResult:
        yield NavBar(self.SECTION)
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> Iterable[Any]:
        return ()

    def refresh_data(self) -> None:
        """Reload what the screen shows (the refresh key, and after jobs change the data)."""

    # The kinds of workspace change (`workspace_changed.KINDS`) that alter what this screen
    # shows; a screen widens it, or overrides `concerns` for finer rules. Not "profiles" by
    # default: those come every second while the demo makes profiles, and a list reloaded
    # that often would keep losing the analyst's place.
    CONCERNS: ClassVar[frozenset[str]] = frozenset({"import"})

    def concerns(self, change: Change) -> bool:
        return change.kind in self.CONCERNS

    def on_workspace_changed(self, message: WorkspaceChanged) -> None:
        """The one place a screen learns that a job changed the workspace (see
        `workspace_changed`): reload if the change concerns what it shows."""
        if self.is_attached and self.concerns(message.change):
            self.workspace_changed(message.change)

    def workspace_changed(self, change: Change) -> None:
        """React to a change that concerns this screen: by default, reload everything."""
        self.refresh_data()
