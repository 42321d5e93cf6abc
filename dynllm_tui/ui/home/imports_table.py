"""Home: every import with its row accounting."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable


class ImportsTable(DataTable):
    DEFAULT_CSS = """
    ImportsTable { height: 1fr; border: round $primary-darken-2;
                   border-title-color: $text-accent; }
    """

    def on_mount(self) -> None:
        self.border_title = "Imports"
        self.cursor_type = "row"
        self.add_columns("#", "file", "preset", "read", "kept", "rejected", "imported at")

    def show(self, imports: list[dict[str, Any]]) -> None:
        self.clear()
        for imp in imports:
            self.add_row(
                str(imp["id"]), imp["file"].rsplit("/", 1)[-1], imp["preset"],
                f"{imp['rows_read']:,}", f"{imp['rows_kept']:,}",
                f"{sum(imp['rows_rejected'].values()):,}",
                (imp["imported_at"] or "").replace("T", " ")[:16],
            )
