"""Home: the workspace in numbers (users, items, interactions, time span), or what to do first."""

from __future__ import annotations

from typing import Any

from textual.widgets import Static


class SummaryPanel(Static):
    DEFAULT_CSS = """
    SummaryPanel { height: auto; padding: 0 1; border: round $primary-darken-2;
                   border-title-color: $text-accent; }
    """

    def on_mount(self) -> None:
        self.border_title = "Workspace"
        self.update("Loading workspace…")

    def show(self, status: dict[str, Any], demo_key: str) -> None:
        if status["interactions"]:
            self.update(
                f"[b]{status['users']:,}[/b] users · [b]{status['items']:,}[/b] items · "
                f"[b]{status['interactions']:,}[/b] interactions · "
                f"{status['rejects']:,} rows rejected\n"
                f"time span {status['time_min'][:10]} .. {status['time_max'][:10]} · "
                f"schema v{status['schema_version']}"
            )
        else:
            self.update(
                "This workspace is empty.\n"
                f"Press [b]{demo_key}[/b] to build the demo here (200 real Online Retail "
                "customers), or import a log:\n"
                "  dynllm-tui import FILE --preset online-retail   (or: dynllm-tui demo)"
            )
