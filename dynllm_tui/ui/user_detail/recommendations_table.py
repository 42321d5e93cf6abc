"""User detail: the run's top-K recommendations in three lists — All, Buy again (items the user
bought before) and Discover (items new to them) — with titles, scores, whether the user bought
the item before, and why each item is there (the reason the replay stored).

All three lists come with the user's data (`UserDetail.lists`), so switching (the `l` key, or a
click on a list's name) redraws the table without a query. The line under the table spells out
the reason of the row under the cursor, whole, whatever the terminal's width.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import on
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from dynllm_tui.ui.common.empty_state import EmptyState
from dynllm_tui.ui.formatting import NO_RUN
from storage.browse import (
    LIST_LABELS,
    RECOMMENDATION_LISTS,
    Recommendation,
    UserDetail,
    stored_before_lists,
)

NO_REASON = "—"


COLUMNS = ("rank", "item", "title", "score", "bought before", "why")


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def empty_message(detail: UserDetail, list_name: str) -> str | None:
    """What the recommendations pane says instead of a table, or None when there are rows."""
    run = detail.run
    if run is None:
        return NO_RUN
    if list_name != "all" and not detail.has_lists:
        return _capitalised(stored_before_lists(run.id))
    if detail.lists.get(list_name):
        return None
    if not detail.lists.get("all"):
        return (f"Run #{run.id} has no recommendations for this user "
                "(replay the run to fill them)")
    if list_name == "discover":
        return (f"Nothing to discover for customer {detail.external_id}: run #{run.id} has no "
                "item they have not bought before")
    return (f"Nothing to buy again for customer {detail.external_id} in run #{run.id}: "
            "no item they bought before is ranked")


class RecommendationsTable(Vertical):
    DEFAULT_CSS = """
    RecommendationsTable #recs-lists { height: 1; padding: 0 1; }
    RecommendationsTable DataTable { height: 1fr; }
    RecommendationsTable #recs-why { height: auto; max-height: 3; padding: 0 1;
                                     background: $boost; }
    RecommendationsTable .hidden { display: none; }
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.list_name = "all"
        self._rows: list[Recommendation] = []

    def compose(self) -> Iterable[Any]:
        yield Static(id="recs-lists")
        yield EmptyState(NO_RUN, id="no-recs")
        yield DataTable(id="recs-table", cursor_type="row", zebra_stripes=True, classes="hidden")
        yield Static(id="recs-why", classes="hidden")

    def _ensure_columns(self, table: DataTable) -> None:
        # A second `l` right after the tab opens can reach show() before on_mount has run;
        # rows without columns would crash the screen, so whoever comes first adds them.
        if not table.columns:
            table.add_columns(*COLUMNS)

    def on_mount(self) -> None:
        self._ensure_columns(self.query_one("#recs-table", DataTable))
        detail = getattr(self.screen, "detail", None)
        if detail is not None:
            self.show(detail)

    def select(self, list_name: str | None = None) -> None:
        """Show `list_name`, or the next list after the one shown (All, Buy again, Discover)."""
        if list_name is None:
            at = RECOMMENDATION_LISTS.index(self.list_name)
            list_name = RECOMMENDATION_LISTS[(at + 1) % len(RECOMMENDATION_LISTS)]
        self.list_name = list_name
        detail = getattr(self.screen, "detail", None)
        if detail is not None:
            self.show(detail)

    def _switch_line(self, detail: UserDetail) -> str:
        """The lists' names, the one shown highlighted; a click on a name switches to it."""
        parts = []
        for name in RECOMMENDATION_LISTS:
            label = LIST_LABELS[name]
            if detail.has_lists or name == "all":
                label += f" ({len(detail.lists.get(name, []))})"
            style = "b reverse " if name == self.list_name else ""
            parts.append(f"[{style}@click=screen.recs_list('{name}')] {label} [/]")
        return "  ".join(parts) + "   [dim]l: switch list[/]"

    def show(self, detail: UserDetail) -> None:
        table = self.query_one("#recs-table", DataTable)
        empty = self.query_one("#no-recs", EmptyState)
        switch = self.query_one("#recs-lists", Static)
        self._ensure_columns(table)
        table.clear()
        message = empty_message(detail, self.list_name)
        switch.update(self._switch_line(detail) if detail.run is not None else "")
        switch.set_class(detail.run is None, "hidden")
        self._rows = [] if message else detail.lists.get(self.list_name, [])
        if message:
            empty.update(message)
        for r in self._rows:
            table.add_row(
                Text(str(r.rank), justify="right"), r.item_key, r.title or "—",
                Text(f"{r.score:.4f}", justify="right"),
                Text("yes", style="bold") if r.bought_before else Text("new", style="green"),
                r.reason or NO_REASON,
            )
        has = bool(self._rows)
        table.set_class(not has, "hidden")
        empty.set_class(has, "hidden")
        self.query_one("#recs-why", Static).set_class(not has, "hidden")
        if has:
            self._explain(table.cursor_row)

    def _explain(self, row: int) -> None:
        why = self.query_one("#recs-why", Static)
        detail = getattr(self.screen, "detail", None)
        if not 0 <= row < len(self._rows):
            why.update("")
            return
        r = self._rows[row]
        if r.reason:
            why.update(Text.assemble(("Why ", "bold"), f"#{r.rank} {r.title or r.item_key}: ",
                                     r.reason))
        elif detail is not None and detail.run is not None:
            why.update(_capitalised(stored_before_lists(detail.run.id)))

    @on(DataTable.RowHighlighted, "#recs-table")
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._explain(event.cursor_row)
