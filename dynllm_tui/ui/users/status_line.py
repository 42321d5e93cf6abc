"""Users: one line saying how many users match, how they are sorted, how many are loaded."""

from __future__ import annotations

from textual.widgets import Static

SORT_LABELS = {"events": "events", "first": "first purchase", "last": "last purchase",
               "id": "customer id", "attribute": "attribute", "segment": "segment"}


class StatusLine(Static):
    DEFAULT_CSS = """
    StatusLine { height: 1; padding: 0 1; color: $text-muted; }
    """

    def show(self, *, total: int, loaded: int, search: str, sort: str, descending: bool,
             loading: bool = False, attribute_label: str = "attribute") -> None:
        what = f"{total:,} users" + (f" matching {search!r}" if search.strip() else "")
        label = attribute_label if sort == "attribute" else SORT_LABELS[sort]
        order = f"by {label} {'▼' if descending else '▲'}"
        more = " · loading…" if loading else ""
        self.update(f"{what} · {order} · {loaded:,} loaded{more}")
