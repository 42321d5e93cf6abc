"""Users: the exact-match filters in force (segment, country or the main attribute), and how to
clear them; hidden when there are none."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class FilterLine(Static):
    DEFAULT_CSS = """
    FilterLine { height: 1; padding: 0 1; color: $warning; display: none; }
    FilterLine.active { display: block; }
    """

    def show(self, *, segment: str | None, attribute: str | None, attribute_label: str,
             clear_key: str) -> None:
        parts = []
        if segment is not None:
            parts.append(f"segment = {segment!r}")
        if attribute is not None:
            parts.append(f"{attribute_label} = {attribute!r}")
        self.set_class(bool(parts), "active")
        if parts:
            self.update(Text.assemble(("Filtered: ", "bold"), " · ".join(parts),
                                      f"   ({clear_key} clears)"))
