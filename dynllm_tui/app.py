"""The Textual app. A thin layer: screens call headless queries and jobs, never SQL or torch."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Static

from storage.queries import workspace_status
from storage.workspace import Workspace


def load_status(db: str | None) -> dict[str, Any]:
    with Workspace.open(db) as ws:
        return workspace_status(ws)


class WorkbenchApp(App[None]):
    """Home screen: the workspace summary and its imports (more screens come with the UI)."""

    TITLE = "dynllm-tui"
    CSS = """
    #summary { padding: 1 2; height: auto; }
    #imports { height: 1fr; }
    """
    BINDINGS = [
        Binding("r", "refresh", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, db: str | None = None) -> None:
        super().__init__()
        self.db = db

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            yield Static("Loading workspace…", id="summary")
            yield DataTable(id="imports", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#imports", DataTable)
        table.add_columns("#", "file", "preset", "rows read", "kept", "rejected", "imported at")
        self.action_refresh()

    def action_refresh(self) -> None:
        self.load_summary()

    @work(thread=True, exclusive=True)
    def load_summary(self) -> None:
        try:
            status = load_status(self.db)
        except Exception as exc:  # shown, never a crash
            self.call_from_thread(self.notify, str(exc), title="Workspace", severity="error")
            return
        self.call_from_thread(self.show_status, status)

    def show_status(self, status: dict[str, Any]) -> None:
        self.sub_title = status["workspace"]
        if status["interactions"]:
            text = (
                f"[b]{status['users']:,}[/b] users · [b]{status['items']:,}[/b] items · "
                f"[b]{status['interactions']:,}[/b] interactions · "
                f"{status['profiles']:,} profiles · {status['runs']:,} runs\n"
                f"time span {status['time_min']} .. {status['time_max']}"
            )
        else:
            text = (
                "This workspace is empty. Import data with\n"
                "  dynllm-tui import FILE --preset online-retail\n"
                "or build the demo with  dynllm-tui demo"
            )
        self.query_one("#summary", Static).update(text)
        table = self.query_one("#imports", DataTable)
        table.clear()
        for imp in status["imports"]:
            table.add_row(
                str(imp["id"]), imp["file"].rsplit("/", 1)[-1], imp["preset"],
                f"{imp['rows_read']:,}", f"{imp['rows_kept']:,}",
                f"{sum(imp['rows_rejected'].values()):,}", imp["imported_at"],
            )
