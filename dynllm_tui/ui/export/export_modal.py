"""Export: the dialog (one key from any screen). Recommendations for all users, the current
search result or one customer, with k; or the facet weights. Written in a worker with progress;
errors stay in the dialog (and a notification) so the analyst can fix the file name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static

from dynllm_tui.jobs.export import DEFAULT_FILES, WHAT, ExportRequest, run_export
from dynllm_tui.ui.common.base_screen import WorkerResults
from dynllm_tui.ui.keys import bindings


class ExportModal(WorkerResults, ModalScreen[str | None]):
    SCOPE = "export"
    BINDINGS = bindings("export")
    DEFAULT_CSS = """
    ExportModal { align: center middle; }
    ExportModal > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    ExportModal Horizontal { height: auto; }
    ExportModal Label { width: 10; padding: 1 1 0 0; text-align: right; }
    ExportModal Label.short { width: 3; }
    ExportModal Select { width: 1fr; }
    ExportModal #user { width: 1fr; }
    ExportModal #k { width: 10; }
    ExportModal #path { width: 1fr; }
    ExportModal #export-status { height: auto; padding: 0 1; }
    ExportModal ProgressBar { padding: 0 1; display: none; }
    ExportModal ProgressBar.running { display: block; }
    ExportModal #buttons { align-horizontal: right; }
    ExportModal Button { margin: 0 0 0 1; }
    """

    def __init__(self, *, user: str | None = None, search: str = "",
                 prefer_search: bool = False) -> None:
        super().__init__()
        self.user = user or ""
        self.search = search
        if user:
            self.initial_scope = "user"
        elif search.strip() and prefer_search:
            self.initial_scope = "search"
        else:
            self.initial_scope = "all"
        self.running = False

    def compose(self) -> Iterable[Any]:
        scopes = [("All users", "all")]
        if self.search.strip():
            scopes.append((f"Search result: {self.search.strip()!r}", "search"))
        scopes.append(("One customer", "user"))
        with Vertical():
            with Horizontal():
                yield Label("Export")
                yield Select([(label, key) for key, label in WHAT.items()],
                             value="recommendations", allow_blank=False, id="what")
                yield Select(scopes, value=self.initial_scope, allow_blank=False, id="scope")
            with Horizontal():
                yield Label("Customer")
                yield Input(self.user, placeholder="customer id", id="user")
                yield Label("k", classes="short")
                yield Input("10", type="integer", id="k")
            with Horizontal():
                yield Label("File")
                yield Input(DEFAULT_FILES["recommendations"], id="path")
            yield Static("", id="export-status")
            yield ProgressBar(id="export-progress", show_eta=False)
            with Horizontal(id="buttons"):
                yield Button(f"Export ({self.workbench.key_display('export.run')})",
                             variant="primary", id="run")
                yield Button("Close (esc)", id="close")

    def on_mount(self) -> None:
        self.query_one(Vertical).border_title = "Export"
        self.sync_fields()
        self.query_one("#path", Input).focus()

    # --- form ---------------------------------------------------------------------------

    @on(Select.Changed)
    def sync_fields(self) -> None:
        what = self.query_one("#what", Select).value
        scope = self.query_one("#scope", Select).value
        self.query_one("#k", Input).disabled = what != "recommendations"
        self.query_one("#user", Input).disabled = scope != "user"
        path = self.query_one("#path", Input)
        if path.value in DEFAULT_FILES.values() and isinstance(what, str):
            path.value = DEFAULT_FILES[what]
        self.show_target()

    @on(Input.Changed, "#path")
    def show_target(self) -> None:
        request = self.request()
        if request is None:
            return
        target = request.target()
        note = " (exists: will be replaced)" if target.is_file() else ""
        self.set_status(f"→ {escape(str(target))}{note}")

    def request(self) -> ExportRequest | None:
        what = self.query_one("#what", Select).value
        scope = self.query_one("#scope", Select).value
        k_text = self.query_one("#k", Input).value.strip()
        try:
            k = int(k_text or "10")
        except ValueError:
            k = 0
        if not isinstance(what, str) or not isinstance(scope, str):
            return None
        return ExportRequest(what=what, scope=scope, path=self.query_one("#path", Input).value,
                             k=k, search=self.search, user=self.query_one("#user", Input).value)

    def set_status(self, text: str, error: bool = False) -> None:
        self.query_one("#export-status", Static).update(f"[red]{text}[/red]" if error else text)

    # --- run ----------------------------------------------------------------------------

    @on(Button.Pressed, "#run")
    @on(Input.Submitted)
    def action_run_export(self) -> None:
        if self.running:
            return
        request = self.request()
        if request is None:
            return
        self.running = True
        self.query_one("#run", Button).disabled = True
        bar = self.query_one("#export-progress", ProgressBar)
        bar.update(total=None, progress=0)
        bar.add_class("running")
        self.set_status("Exporting…")
        self.export(request)

    @work(thread=True, exclusive=True, exit_on_error=False)
    def export(self, request: ExportRequest) -> None:
        def progress(done: int, total: int, phase: str) -> None:
            self.deliver(self.show_progress, done, total)

        try:
            count, path = run_export(self.workbench.reader.path, request, progress)
        except Exception as exc:
            self.fail("Export", exc)
            self.deliver(self.failed, exc)
            return
        try:  # said even if the dialog was closed meanwhile
            self.app.call_from_thread(self.app.notify, f"wrote {count:,} rows to {path}",
                                      title="Export")
        except RuntimeError:
            pass
        self.deliver(self.done, str(path))

    def show_progress(self, done: int, total: int) -> None:
        self.query_one("#export-progress", ProgressBar).update(total=max(total, 1), progress=done)

    def failed(self, exc: BaseException) -> None:
        self.running = False
        self.query_one("#run", Button).disabled = False
        self.query_one("#export-progress", ProgressBar).remove_class("running")
        self.set_status(escape(str(exc)), error=True)

    def done(self, path: str) -> None:
        self.running = False
        self.dismiss(path)

    @on(Button.Pressed, "#close")
    def action_cancel(self) -> None:
        if self.running:
            self.notify("The export is still being written; it finishes on its own.",
                        severity="warning")
        self.dismiss(None)
