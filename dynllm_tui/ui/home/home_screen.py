"""Home: workspace summary, pipeline status, imports; on an empty workspace, the demo in one key.

The demo build (`dynllm_tui.jobs.demo.demo_job`: import, then profiles, training and replay as
that job grows) runs as a child process, `dynllm-tui demo --no-open`
(`dynllm_tui.jobs.child_process`: torch, llama.cpp and transformers never load in the app, so
they never stall its event loop), watched by a thread worker, with a progress bar and its current
phase; the app stays usable meanwhile. What the build commits reaches every screen as a
`WorkspaceChanged` message (`ui/common/workspace_changed.py`): when the import phase ends, as
profiles are committed (at most once a second, so "Profiles N made" follows the bar), and when the
build ends (the run). The app's `build_demo=True` (what `dynllm-tui demo` opens) starts the same
build as Home first shows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from textual import work
from textual.containers import Vertical
from textual.widgets import Static
from textual.worker import get_current_worker

from dynllm_tui.jobs.training_lock import training_in_progress
from dynllm_tui.ui.common.base_screen import WorkbenchScreen
from dynllm_tui.ui.common.workspace_changed import KINDS
from dynllm_tui.ui.home.home_queries import HOME_QUERIES, pipeline_status, workspace_status
from dynllm_tui.ui.home.imports_table import ImportsTable
from dynllm_tui.ui.home.pipeline_panel import PipelinePanel
from dynllm_tui.ui.home.summary_panel import SummaryPanel
from dynllm_tui.ui.keys import bindings

if TYPE_CHECKING:
    from textual.widgets import ProgressBar

PROGRESS_EVERY_S = 0.1  # demo progress reaches the UI at most 10 times a second
# While profiles are being committed, the screens reload their counts at most this often: each
# reload is two small queries, and a profile takes about a second anyway.
PROFILES_REFRESH_S = 1.0
# The profiles job's phases (its catalogue steps first: item embeddings, taxonomy names).
PROFILE_PHASES = frozenset({"profiles", "embeddings", "item embeddings", "taxonomy",
                            "taxonomy names"})
RUN_PHASES = frozenset({"train", "test", "replay"})


def phase_change(ended: str | None) -> str | None:
    """What the workspace holds once a demo phase has ended: the kind of `WorkspaceChanged` to
    post, or None. Training's phases post nothing: the run is usable only once the build ends
    (which posts "run"). Any other phase is the import's (it names its own steps: reading,
    writing, indexing, …)."""
    if ended is None or ended in RUN_PHASES:
        return None
    return "profiles" if ended in PROFILE_PHASES else "import"


def demo_args(options: dict[str, Any]) -> list[str]:
    """`dynllm-tui demo` arguments for the app's demo options (those of `demo_job`)."""
    args = ["demo", "--no-open"]
    if options.get("profile_limit") is not None:
        args += ["--profile-users", str(options["profile_limit"])]
    if options.get("epochs") is not None:
        args += ["--epochs", str(options["epochs"])]
    if options.get("writer") is not None:
        args += ["--writer", str(options["writer"])]
    unknown = set(options) - {"profile_limit", "epochs", "writer"}
    if unknown:
        raise ValueError(f"demo options the CLI does not take: {', '.join(sorted(unknown))}")
    return args


class HomeScreen(WorkbenchScreen):
    SCOPE = "home"
    SECTION = "home"
    BINDINGS = bindings("home")
    CONCERNS = KINDS  # the summary and pipeline show a bit of everything
    DEFAULT_CSS = """
    HomeScreen #demo-progress { height: auto; padding: 0 1; display: none; }
    HomeScreen #demo-progress.running { display: block; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.empty: bool | None = None
        self.demo_running = False
        self.demo_phase: str | None = None
        self._cancel: Any = None
        self._profiles_posted = 0.0  # when the last "profiles" change was posted (monotonic)
        self._profiles_done = 0  # the profiles count of that post
        self._resumed = False  # shown once already (the first show is on_mount's)

    def compose_body(self) -> Iterable[Any]:
        yield SummaryPanel(id="summary")
        # Filled when a demo build starts (`_demo_progress`): hidden until then, and a progress
        # bar's four widgets and their styles are start-up work the first screen does not show.
        yield Vertical(id="demo-progress")
        yield PipelinePanel(id="pipeline")
        yield ImportsTable(id="imports")

    def on_mount(self) -> None:
        # The command started Home's queries before it imported the app (`cli._open_app`): when
        # their answers are ready, the first paint shows them, without a worker's round trip
        # and a first frame of placeholders. Else (or when they are stale) the worker asks.
        early = self.workbench.reader.prefetched(*HOME_QUERIES)
        if early is None:
            self.refresh_data()
        else:
            # One non-blocking flock probe, as the app's own lock watch does on this thread.
            self._deliver(self.show, *early, training_in_progress(self.workbench.db_path))
        if self.workbench.build_demo_on_start:
            self.workbench.build_demo_on_start = False  # once, not on every new Home
            self.start_demo()

    def on_screen_resume(self) -> None:
        if self._resumed:  # not the first show (on_mount loads that): the data may have moved on
            self.refresh_data()
        self._resumed = True

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
            holder = training_in_progress(self.workbench.db_path)
        except Exception as exc:
            self.fail("Workspace", exc)
            return
        if not get_current_worker().is_cancelled:
            self.deliver(self.show, status, pipeline, holder)

    def show(self, status: dict[str, Any], pipeline: Any,
             holder: dict[str, Any] | None = None) -> None:
        self.empty = not status["interactions"]
        self.workbench.sub_title = status["workspace"]
        self.query_one(SummaryPanel).show(status, self.workbench.key_display("home.demo"))
        self.query_one(PipelinePanel).show(pipeline, not self.empty, holder,
                                           self.workbench.key_display("training"))
        self.query_one(ImportsTable).show(status["imports"])
        self.refresh_bindings()

    # --- the demo -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "build_demo":
            return bool(self.empty) and not self.demo_running
        if action == "cancel_demo":
            return self.demo_running
        return True

    def action_build_demo(self) -> None:
        if not self.empty or self.demo_running:
            return
        self.start_demo()

    def action_cancel_demo(self) -> None:
        if not self.demo_running or self._cancel is None:
            return
        self._cancel.set()
        self.query_one("#demo-label", Static).update("Stopping the demo build…")

    def start_demo(self) -> None:
        """Build (or finish building) the demo in this workspace, in the background."""
        if self.demo_running:
            return
        from dynllm_tui.jobs.control import CancelFlag

        self.demo_running = True
        self.demo_phase = None
        self._cancel = CancelFlag()
        self._demo_progress().update(total=None, progress=0)
        self.query_one("#demo-label", Static).update("Building the demo workspace…")
        self.query_one("#demo-progress").add_class("running")
        self.refresh_bindings()
        self.workbench.background_job_started()
        self.build_demo(self._cancel)

    def _demo_progress(self) -> ProgressBar:
        """The demo build's progress bar; it and its label are mounted on the first start."""
        from textual.widgets import ProgressBar  # not at start-up: see compose_body

        box = self.query_one("#demo-progress", Vertical)
        if not box.children:
            box.mount(Static("Building the demo workspace…", id="demo-label"),
                      ProgressBar(id="demo-bar", show_eta=False))
        return self.query_one("#demo-bar", ProgressBar)

    @work(thread=True, exclusive=True, group="demo", exit_on_error=False)
    def build_demo(self, cancel: Any) -> None:
        from dynllm_tui.jobs import child_process as child_job

        sent = {"at": 0.0, "phase": None}

        def progress(done: int, total: int, phase: str) -> None:
            # Called per chunk from this thread: forward at most 10 a second, but every change
            # of phase at once (the UI reloads its data then).
            now = time.monotonic()
            if phase == sent["phase"] and now - sent["at"] < PROGRESS_EVERY_S:
                return
            sent.update(at=now, phase=phase)
            self.deliver(self.show_progress, done, total, phase)

        try:
            # Through the shared reader first: it creates a new workspace under its lock, so
            # the job and Home's first load never both create the schema (sqlite would fail
            # one of them with "table already exists").
            db = self.workbench.reader.path
            result = child_job.run_cli_job(
                demo_args(self.workbench.demo_options), db,
                lambda e: progress(int(e.get("done") or 0), int(e.get("total") or 0),
                                   str(e.get("phase") or "")),
                cancel)
        except Exception as exc:
            if cancel():  # a phase that reports a cancel by raising
                self.deliver(self.demo_done, False, str(exc))
            else:
                self.fail("Demo", exc)
                self.deliver(self.demo_done, False)
            return
        if cancel() or result.get("cancelled"):
            self.deliver(self.demo_done, False, "cancelled")
        else:
            self.deliver(self.demo_done, True)

    def show_progress(self, done: int, total: int, phase: str) -> None:
        if self._cancel is not None and self._cancel():
            return  # keep saying "stopping"
        self._demo_progress().update(total=max(total, 1), progress=done)
        self.query_one("#demo-label", Static).update(
            f"Building the demo workspace: {phase} · stop with "
            f"{self.workbench.key_display('home.cancel_demo')}")
        if phase != self.demo_phase:
            ended = phase_change(self.demo_phase)
            if ended is not None:  # the previous phase's data is in the workspace
                self.workbench.workspace_changed(ended)
            self.demo_phase = phase
        elif phase == "profiles" and done != self._profiles_done:
            # Each profile is committed as it is made: let the counts follow the bar.
            now = time.monotonic()
            if now - self._profiles_posted >= PROFILES_REFRESH_S:
                self._profiles_posted, self._profiles_done = now, done
                self.workbench.workspace_changed("profiles")

    def demo_done(self, ok: bool, stopped: str | None = None) -> None:
        if self.demo_running:
            self.workbench.background_job_finished()
        self.demo_running = False
        self._cancel = None
        self.query_one("#demo-progress").remove_class("running")
        if ok:
            self.notify("Demo workspace ready: browse users with "
                        f"{self.workbench.key_display('users')}", title="Demo")
        elif stopped is not None:
            self.notify(f"Demo build stopped ({stopped}); dynllm-tui demo resumes it",
                        title="Demo", severity="warning")
        self.refresh_bindings()
        # Once, for the whole build: every screen reloads what the build changed (a stopped
        # build may still have landed data or left a cancelled run).
        reached_training = self.demo_phase in RUN_PHASES
        self.workbench.workspace_changed(
            "run" if ok or reached_training else phase_change(self.demo_phase) or "import")
