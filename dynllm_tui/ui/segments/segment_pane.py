"""Segments: the highlighted segment in full — its figures, the mean facet weights at its
customers' latest event, and the items most recommended to its customers in the buy-again and
discover lists (with how many of them get each), or why those lists are missing."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from dynllm_tui.ui.segments.segments_table import percent, short_facet, weight
from storage.browse import SegmentDetail

LIST_TITLES = {"buy-again": "Buy again", "discover": "Discover", "all": "All (combined)"}


def render_detail(detail: SegmentDetail, export_key: str, open_key: str) -> Text:
    row = detail.row
    text = Text()
    text.append(row.segment + "\n", style="bold")
    text.append(f"{row.users:,} customer{'s' if row.users != 1 else ''} "
                f"({percent(row.share)} of {detail.users_total:,}) · "
                f"{row.events:,} lines\n"
                f"repeat share {percent(row.repeat_share)} (re-buys among purchases)\n")
    if row.users == 1:
        text.append("One customer only: every figure is that customer's own.\n",
                    style="italic")
    if detail.facets:
        text.append(f"\nMean facet weights, latest event (run #{detail.run_id})\n",
                    style="bold")
        text.append("  " + " · ".join(f"{short_facet(f)} {weight(row.facet_weights.get(f))}"
                                      for f in detail.facets) + "\n")
    if detail.note:
        text.append(f"\n{detail.note}\n", style="italic")
    for name, items in detail.items.items():
        text.append(f"\n{LIST_TITLES.get(name, name)} · most recommended\n", style="bold")
        text.append(f"  in the top 10 of how many of "
                    f"{detail.users_with_recommendations:,} customers\n", style="dim")
        if not items:
            text.append("  none\n", style="dim")
        for item in items:
            title = (item.title or "")[:27]
            text.append(f"  {item.users:>4,}  {item.item_key:<8} {title}\n")
    text.append(f"\n{open_key}: these customers in Users\n{export_key}: export their "
                "recommendations (CSV)", style="dim")
    return text


class SegmentPane(VerticalScroll):
    DEFAULT_CSS = """
    SegmentPane { width: 50; height: 1fr; border-left: solid $panel; padding: 0 1; }
    """

    def compose(self):
        yield Static("", id="segment-detail")

    def show(self, content: Text | str) -> None:
        self.query_one("#segment-detail", Static).update(content)
