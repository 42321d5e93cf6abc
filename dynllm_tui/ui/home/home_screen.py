"""Home: workspace summary, pipeline status, imports; on an empty workspace, the demo in one key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import work
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static
from textual.worker import get_current_worker

from dynllm_tui.ui.common.base_screen import WorkbenchScreen
from dynllm_tui.ui.home.imports_table import ImportsTable
from dynllm_tui.ui.home.pipeline_panel import PipelinePanel
from dynllm_tui.ui.home.summary_panel import SummaryPanel
from dynllm_tui.ui.keys import bindings
from storage.browse import pipeline_status
from storage.queries import workspace_status


class HomeScreen(WorkbenchScreen):
    SCOPE = "home"
    SECTION = "home"
    BINDINGS = bindings("home")
    DEFAULT_CSS = """
    HomeScreen #demo-progress { height: auto; padding: 0 1; display: none; }
    HomeScreen #demo-progress.running { display: block; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.empty: bool | None = None
        self.demo_running = False
        self._cancel: Any = None

    def compose_body(self) -> Iterable[Any]:
        yield SummaryPanel(id="summary")
        with Vertical(id="demo-progress"):
            yield Static("Building the demo workspace…", id="demo-label")
            yield ProgressBar(id="demo-bar", show_eta=False)
        yield PipelinePanel(id="pipeline")
        yield ImportsTable(id="imports")

    def on_mount(self) -> None:
        self.refresh_data()

    def on_screen_resume(self) -> None:
        if self.empty is not None:  # not the first show: the data may have moved on
            self.refresh_data()

    def on_unmount(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def refresh_data(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load(self) -> None:
        try:
            status = self.fetch(workspace_status)
            pipeline = self.fetch(pipeline_status)
        except Exception as exc:
            self.fail("Workspace", exc)
            return
        if not get_current_worker().is_cancelled:
            self.deliver(self.show, status, pipeline)

    def show(self, status: dict[str, Any], pipeline: Any) -> None:
        self.empty = not status["interactions"]
        self.workbench.sub_title = status["workspace"]
        self.query_one(SummaryPanel).show(status, self.workbench.key_display("home.demo"))
        self.query_one(PipelinePanel).show(pipeline, not self.empty)
        self.query_one(ImportsTable).show(status["imports"])
        self.refresh_bindings()

    # --- the demo -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "build_demo":
            return bool(self.empty) and not self.demo_running
        return True

    def action_build_demo(self) -> None:
        if not self.empty or self.demo_running:
            return
        from dynllm_tui.jobs import CancelFlag

        self.demo_running = True
        self._cancel = CancelFlag()
        self.query_one("#demo-progress").add_class("running")
        self.refresh_bindings()
        self.build_demo(self._cancel)

    @work(thread=True, exclusive=True, group="demo", exit_on_error=False)
    def build_demo(self, cancel: Any) -> None:
        from dynllm_tui.jobs import demo_job

        def progress(done: int, total: int, phase: str) -> None:
            self.deliver(self.show_progress, done, total, phase)

        try:
            demo_job(self.workbench.reader.path, progress=progress, cancel=cancel)
        except Exception as exc:
            self.fail("Demo", exc)
            self.deliver(self.demo_done, False)
            return
        self.deliver(self.demo_done, True)

    def show_progress(self, done: int, total: int, phase: str) -> None:
        self.query_one("#demo-bar", ProgressBar).update(total=max(total, 1), progress=done)
        self.query_one("#demo-label", Static).update(f"Building the demo workspace: {phase}")

    def demo_done(self, ok: bool) -> None:
        self.demo_running = False
        self.query_one("#demo-progress").remove_class("running")
        if ok:
            self.notify("Demo data imported: browse users with "
                        f"{self.workbench.key_display('users')}", title="Demo")
        self.refresh_data()
