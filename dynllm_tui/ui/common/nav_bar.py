"""The one-line bar at the top of every screen: the sections with their keys, and the workspace."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

SECTIONS = (("home", "Home"), ("users", "Users"), ("runs", "Runs"), ("training", "Training"),
            ("segments", "Segments"))


class NavBar(Static):
    DEFAULT_CSS = """
    NavBar { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def __init__(self, section: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.section = section

    def on_mount(self) -> None:
        self.update(self.render_bar())

    def render_bar(self) -> Text:
        app = self.app
        text = Text.assemble(("dynllm-tui ", "bold"))
        for mode, label in SECTIONS:
            key = app.key_display(mode) if hasattr(app, "key_display") else ""
            style = "bold reverse" if mode == self.section else ""
            text.append(" ")
            text.append(f" {key} {label} ", style=style)
        workspace = getattr(app, "workspace_name", "")
        if workspace:
            text.append("  ")
            text.append(workspace, style="italic")
        return text
