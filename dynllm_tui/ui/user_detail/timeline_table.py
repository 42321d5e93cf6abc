"""User detail: the purchase timeline, newest first. Rows are added a chunk at a time as the
cursor nears the end (measuring thousands of cells at once would stall the screen); when the
events in memory run out, the screen fetches the next page from the workspace."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable

from dynllm_tui.ui.formatting import minute, money, number
from storage.browse import TimelineEvent

CHUNK = 100
NEAR_END = 20


class TimelineTable(DataTable):
    DEFAULT_CSS = """
    TimelineTable { height: 1fr; }
    """
    BINDINGS = [
        Binding("home", "scroll_top", "Newest", show=False),
        Binding("end", "scroll_bottom", "Oldest loaded", show=False),
    ]

    class NeedMore(Message):
        """Every event in memory is shown and the user has older ones: fetch the next page."""

        def __init__(self, offset: int) -> None:
            super().__init__()
            self.offset = offset

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.events: list[TimelineEvent] = []
        self.total = 0
        self.waiting = False

    def on_mount(self) -> None:
        self.add_columns("time (UTC)", "basket", "item", "title", "qty", "value")
        self.fixed_columns = 1

    def show(self, events: list[TimelineEvent], total: int) -> None:
        """The newest `events` of the user's `total`."""
        self.clear()
        self.events = list(events)
        self.total = total
        self.waiting = False
        self._add_chunk()

    def extend(self, events: list[TimelineEvent]) -> None:
        """Older events fetched by the screen."""
        self.waiting = False
        self.events.extend(events)
        self._add_chunk()

    def _add_chunk(self) -> None:
        for e in self.events[self.row_count:self.row_count + CHUNK]:
            self.add_row(minute(e.ts), e.basket or "—", e.item_key, _cut(e.title or "—", 30),
                         Text(number(e.quantity), justify="right"),
                         Text(money(e.value), justify="right"))

    def _near_end(self) -> None:
        if not self.row_count or self.cursor_row < self.row_count - NEAR_END and \
                self.scroll_y + self.scrollable_content_region.height < self.row_count - 5:
            return
        if self.row_count < len(self.events):
            self._add_chunk()
        elif len(self.events) < self.total and not self.waiting:
            self.waiting = True
            self.post_message(self.NeedMore(len(self.events)))

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        self.call_later(self._near_end)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.call_later(self._near_end)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
