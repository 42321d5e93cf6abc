"""User detail: the active run's top-K recommendations with titles, scores and whether the user
bought the item before."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import DataTable

from dynllm_tui.ui.common.empty_state import EmptyState
from dynllm_tui.ui.formatting import NO_RUN
from storage.browse import UserDetail


class RecommendationsTable(Vertical):
    DEFAULT_CSS = """
    RecommendationsTable DataTable { height: 1fr; }
    RecommendationsTable .hidden { display: none; }
    """

    def compose(self) -> Iterable[Any]:
        yield EmptyState(NO_RUN, id="no-recs")
        yield DataTable(id="recs-table", cursor_type="row", zebra_stripes=True, classes="hidden")

    def on_mount(self) -> None:
        self.query_one("#recs-table", DataTable).add_columns("rank", "item", "title", "score",
                                                        "bought before")
        detail = getattr(self.screen, "detail", None)
        if detail is not None:
            self.show(detail)

    def show(self, detail: UserDetail) -> None:
        table = self.query_one("#recs-table", DataTable)
        empty = self.query_one("#no-recs", EmptyState)
        table.clear()
        if detail.run is None:
            empty.update(NO_RUN)
        elif not detail.recommendations:
            empty.update(f"Run #{detail.run.id} has no recommendations for this user "
                         "(replay the run to fill them)")
        for r in detail.recommendations:
            table.add_row(
                Text(str(r.rank), justify="right"), r.item_key, r.title or "—",
                Text(f"{r.score:.4f}", justify="right"),
                Text("yes", style="bold") if r.bought_before else Text("new", style="green"),
            )
        has = bool(detail.recommendations)
        table.set_class(not has, "hidden")
        empty.set_class(has, "hidden")
