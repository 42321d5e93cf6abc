"""Users: a table that holds only the pages loaded so far and asks for the next page when the
cursor or the scroll position nears its end, so 100k users never become 100k rows at once."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable

from dynllm_tui.ui.formatting import day
from storage.browse import UserRow

COLUMNS = (("id", "customer"), ("attribute", "country"), ("events", "events"),
           ("first", "first purchase"), ("last", "last purchase"), ("segment", "segment"))
# column key -> sort key of `users_page` (every column sorts)
SORTABLE = {"id": "id", "attribute": "attribute", "events": "events", "first": "first",
            "last": "last", "segment": "segment"}
NEAR_END = 20


class UsersTable(DataTable):
    DEFAULT_CSS = """
    UsersTable { height: 1fr; }
    """
    BINDINGS = [  # rows matter more than columns here: home/end go to the first/last user
        Binding("home", "scroll_top", "First", show=False),
        Binding("end", "scroll_bottom", "Last loaded", show=False),
    ]

    class NearEnd(Message):
        """The cursor or the view is within a few rows of the last loaded row."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_by_key: dict[str, UserRow] = {}

    def reset(self, attribute_label: str, sort: str, descending: bool) -> None:
        self.clear(columns=True)
        self.rows_by_key = {}
        arrow = " ▼" if descending else " ▲"
        for key, label in COLUMNS:
            if key == "attribute":
                label = attribute_label
            if SORTABLE.get(key) == sort:
                label += arrow
            self.add_column(Text(label, style="bold" if SORTABLE.get(key) == sort else ""),
                            key=key)

    def append(self, rows: list[UserRow]) -> None:
        for r in rows:
            self.rows_by_key[str(r.user_id)] = r
            self.add_row(
                r.external_id, r.attribute or "—", Text(f"{r.events:,}", justify="right"),
                day(r.first_ts), day(r.last_ts), _cut(r.segment or "—", 28), key=str(r.user_id),
            )

    def row_at_cursor(self) -> UserRow | None:
        """The full row under the cursor (what the filter keys take their values from)."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key
        return self.rows_by_key.get(str(key.value))

    def user_at_cursor(self) -> tuple[int, str] | None:
        """(internal id, customer id) of the row under the cursor."""
        if not self.row_count:
            return None
        row_key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key
        return int(row_key.value), str(self.get_row(row_key)[0])

    def is_near_end(self) -> bool:
        """The cursor, or the bottom of the view, is within a few rows of the last row."""
        if not self.row_count:
            return False
        bottom_row = self.scroll_y + self.scrollable_content_region.height
        return self.cursor_row >= self.row_count - NEAR_END or bottom_row >= self.row_count - 5

    def _check_near_end(self) -> None:
        if self.is_near_end():
            self.post_message(self.NearEnd())

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        self._check_near_end()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._check_near_end()


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
