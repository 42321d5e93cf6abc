"""Segments: customers grouped by the crowd segment of their latest profile. A table of segments
(paged from `storage.browse.segments_page`), the highlighted one in full beside it; Enter opens
Users filtered to that segment; a key writes the segment's recommendations as CSV (the export
job, filtered: `dynllm-tui export recommendations --segment NAME`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.containers import Horizontal
from textual.widgets import DataTable, Static
from textual.worker import get_current_worker

from dynllm_tui.jobs.segments import NO_PROFILES, default_export_name, export_segment
from dynllm_tui.ui.common.base_screen import WorkbenchScreen
from dynllm_tui.ui.common.empty_state import EmptyState
from dynllm_tui.ui.keys import bindings
from dynllm_tui.ui.segments.segment_pane import SegmentPane, render_detail
from dynllm_tui.ui.segments.segments_table import SegmentsTable
from storage.browse import SegmentDetail, SegmentsPage, segment_detail, segments_page

PAGE = 100
TOP_ITEMS = 5  # items shown per list in the detail pane


class SegmentsScreen(WorkbenchScreen):
    SCOPE = "segments"
    SECTION = "segments"
    BINDINGS = bindings("segments")
    CONCERNS = frozenset({"import", "profiles", "run", "activate"})
    DEFAULT_CSS = """
    SegmentsScreen #segments-summary { height: 1; padding: 0 1; color: $text-muted; }
    SegmentsScreen #segments-body { height: 1fr; }
    SegmentsScreen .hidden { display: none; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0
        self.total = 0
        self.loading = False
        self.facets: list[str] = []
        self.run_id: int | None = None
        self.export_dir: Path | None = None  # where exports go (None: the current folder)

    def compose_body(self) -> Iterable[Any]:
        yield Static("Loading segments…", id="segments-summary")
        yield EmptyState(NO_PROFILES, id="no-segments", classes="hidden")
        with Horizontal(id="segments-body"):
            yield SegmentsTable(id="segments")
            yield SegmentPane(id="segment-pane")

    def on_mount(self) -> None:
        self.query_one(SegmentsTable).focus()
        self.refresh_data()

    def refresh_data(self) -> None:
        self.generation += 1
        self.loading = True
        self.load_page(self.generation, 0)

    # --- loading ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="segments", exit_on_error=False)
    def load_page(self, generation: int, offset: int) -> None:
        try:
            page = self.fetch(segments_page, offset=offset, limit=PAGE)
        except Exception as exc:
            self.fail("Segments", exc)
            return
        if not get_current_worker().is_cancelled:
            self.deliver(self.show_page, generation, page)

    def show_page(self, generation: int, page: SegmentsPage) -> None:
        if generation != self.generation:
            return
        table = self.query_one(SegmentsTable)
        selected = table.segment_at_cursor() if page.offset == 0 else None
        if page.offset == 0:
            table.reset(page.facets)
        if page.offset == table.row_count:
            table.append(page.rows, page.facets)
        self.total, self.facets, self.run_id = page.total, page.facets, page.run_id
        self.loading = False
        empty = page.total == 0
        self.query_one("#no-segments").set_class(not empty, "hidden")
        self.query_one("#segments-body").set_class(empty, "hidden")
        if page.users == 0:
            self.query_one("#no-segments", EmptyState).update(
                "No customers yet: import a file first (dynllm-tui import FILE)")
        self.query_one("#segments-summary", Static).update(self._summary(page))
        if page.offset == 0 and table.row_count and selected in table.segments:
            table.move_cursor(row=table.segments.index(selected))

    def _summary(self, page: SegmentsPage) -> str:
        run = (f"facet weights and lists of run #{page.run_id}" if page.run_id is not None
               else "no finished run yet: no facet weights or lists")
        return (f"{page.total:,} segments · {page.unsegmented:,} of {page.users:,} customers "
                f"have no profile (in no segment) · {run}")

    @on(SegmentsTable.NearEnd)
    def load_more(self) -> None:
        loaded = self.query_one(SegmentsTable).row_count
        if self.loading or loaded >= self.total:
            return
        self.loading = True
        self.load_page(self.generation, loaded)

    # --- the highlighted segment ----------------------------------------------------------

    @on(DataTable.RowHighlighted, "#segments")
    def highlighted(self) -> None:
        # After the next paint: the table shows first, the detail's query does not compete
        # with it (a new page highlights its first row, which lands here too).
        self.call_after_refresh(self._load_highlighted)

    def _load_highlighted(self) -> None:
        self.load_detail(self.query_one(SegmentsTable).segment_at_cursor())

    @work(thread=True, exclusive=True, group="segment-detail", exit_on_error=False)
    def load_detail(self, segment: str | None) -> None:
        if segment is None:
            return
        try:
            detail = self.fetch(segment_detail, segment, top=TOP_ITEMS)
        except Exception as exc:
            self.fail("Segments", exc)
            return
        if not get_current_worker().is_cancelled:
            self.deliver(self.show_detail, detail)

    def show_detail(self, detail: SegmentDetail) -> None:
        if detail.row.segment != self.query_one(SegmentsTable).segment_at_cursor():
            return  # the cursor has moved on
        self.query_one(SegmentPane).show(render_detail(
            detail, self.workbench.key_display("segments.export"),
            self.workbench.key_display("segments.open")))

    # --- actions ------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#segments")
    def row_selected(self) -> None:
        self.action_open_segment()

    def action_open_segment(self) -> None:
        """Users, filtered to the highlighted segment's customers."""
        segment = self.query_one(SegmentsTable).segment_at_cursor()
        if segment is None:
            return
        self.app.open_users(segment=segment)

    def action_export_segment(self) -> None:
        segment = self.query_one(SegmentsTable).segment_at_cursor()
        if segment is None:
            return
        out = (self.export_dir or Path.cwd()) / default_export_name(segment)
        self.notify(f"exporting the recommendations of {segment!r}…", title="Segments")
        self.export(segment, out)

    @work(thread=True, exclusive=True, group="segment-export", exit_on_error=False)
    def export(self, segment: str, out: Path) -> None:
        try:
            rows = export_segment(self.workbench.db, segment, out)
        except Exception as exc:
            self.fail("Export", exc)
            return
        self.deliver(self.notify, f"wrote {rows:,} rows to {out}", title="Export")
