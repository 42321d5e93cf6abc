"""Help: every key binding in force (after the config file's remapping), by screen, and where
the config file lives."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.markup import escape
from rich.table import Table
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from dynllm_tui.ui.config import EXAMPLE, config_path
from dynllm_tui.ui.keys import KEYS, SCOPES, bindings, effective_keys


class HelpScreen(ModalScreen[None]):
    SCOPE = "help"
    BINDINGS = bindings("help")
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 78; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    HelpScreen VerticalScroll { height: auto; max-height: 100%; }
    """

    def compose(self) -> Iterable[Any]:
        with Vertical():
            with VerticalScroll():
                yield Static(self.render_keys(), id="help-keys")
                yield Static(self.render_config(), id="help-config")

    def on_mount(self) -> None:
        self.query_one(Vertical).border_title = "Keys  (escape closes)"

    def render_keys(self) -> Table:
        app = self.app
        keys = effective_keys(getattr(app, "_keymap", {}))
        table = Table(box=None, padding=(0, 1), show_header=False, expand=True)
        table.add_column(style="bold", width=12)
        table.add_column(width=8)
        table.add_column(ratio=1)
        for scope, title in SCOPES.items():
            specs = [s for s in KEYS if s.scope == scope]
            for i, spec in enumerate(specs):
                shown = " ".join(app.get_key_display(Binding(k, ""))
                                 for k in keys[spec.id].split(","))
                table.add_row(title if i == 0 else "", shown, f"{spec.description}  "
                              f"[dim]{spec.id}[/dim]")
        return table

    def render_config(self) -> str:
        config = getattr(self.app, "config", None)
        path = config.path if config is not None and config.path else config_path()
        example = escape(EXAMPLE.strip()).replace("\n", "\n  ")
        return (f"\nRemap keys in [b]{escape(str(path))}[/b] (ids in grey), e.g.\n  {example}\n"
                "Every action is also in the command palette.")

    def action_close(self) -> None:
        self.dismiss()
