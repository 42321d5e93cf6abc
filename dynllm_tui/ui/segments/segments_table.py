"""Segments: one row per crowd segment (most customers first) with its share, repeat share and
the mean facet weights; a facet no customer of the segment had reads "n/a", never 0. Holds the
pages loaded so far and asks for the next one near its end."""

from __future__ import annotations

from rich.text import Text
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable

from storage.browse import SegmentRow

NEAR_END = 10


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def short_facet(facet: str) -> str:
    """'crowd_segment' -> 'crowd': a column label that fits."""
    return facet.split("_")[0][:10]


def weight(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


class SegmentsTable(DataTable):
    DEFAULT_CSS = """
    SegmentsTable { height: 1fr; width: 1fr; }
    """

    class NearEnd(Message):
        """The cursor is within a few rows of the last loaded row."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.segments: list[str] = []

    def reset(self, facets: list[str]) -> None:
        self.clear(columns=True)
        self.segments = []
        self.add_column("segment", key="segment")
        for key in ("users", "share", "repeat"):
            self.add_column(Text(key, justify="right"), key=key)
        for facet in facets:
            self.add_column(Text(short_facet(facet), justify="right"), key=facet)

    def append(self, rows: list[SegmentRow], facets: list[str]) -> None:
        for row in rows:
            self.segments.append(row.segment)
            self.add_row(
                _cut(row.segment, 24), Text(f"{row.users:,}", justify="right"),
                Text(percent(row.share), justify="right"),
                Text(percent(row.repeat_share), justify="right"),
                *(Text(weight(row.facet_weights.get(f)), justify="right") for f in facets),
                key=str(len(self.segments) - 1),
            )

    def segment_at_cursor(self) -> str | None:
        if not self.row_count or self.cursor_row >= len(self.segments):
            return None
        return self.segments[self.cursor_row]

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        if self.row_count and self.cursor_row >= self.row_count - NEAR_END:
            self.post_message(self.NearEnd())


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
