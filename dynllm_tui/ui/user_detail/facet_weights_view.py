"""User detail: the facet relevance weights (attention over the run's profile facets: all four,
or the one a facet ablation kept) as bars at the user's latest event, and their evolution over
the user's events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from dynllm_tui.ui.common.empty_state import EmptyState
from dynllm_tui.ui.formatting import NO_RUN, bar, day
from dynllm_tui.ui.user_detail.plots import days_since, thin
from models.vocabulary import FACET_LABELS
from storage.browse import FacetWeights, UserDetail

COLORS = {"crowd_segment": "cyan", "interests": "magenta", "categories": "green",
          "brands": "orange"}
OTHER_COLOR = "white"  # a facet this build does not know (a newer run's): shown, not dropped


def shown_facets(rows: list[FacetWeights]) -> list[str]:
    """The facets the run stored for this user, in stored order (first appearance)."""
    return list(dict.fromkeys(facet for row in rows for facet in row.weights))


def facet_label(facet: str) -> str:
    return FACET_LABELS.get(facet, facet)


class FacetWeightsView(Vertical):
    DEFAULT_CSS = """
    FacetWeightsView #bars { height: auto; padding: 0 1; }
    FacetWeightsView PlotextPlot { height: 1fr; min-height: 6; }
    FacetWeightsView .hidden { display: none; }
    """

    def compose(self) -> Iterable[Any]:
        yield EmptyState(NO_RUN, id="no-weights")
        yield Static(id="bars", classes="hidden")
        yield PlotextPlot(id="evolution", classes="hidden")

    def on_mount(self) -> None:
        detail = getattr(self.screen, "detail", None)
        if detail is not None:
            self.show(detail)

    def show(self, detail: UserDetail) -> None:
        rows = detail.facet_weights
        empty = self.query_one("#no-weights", EmptyState)
        if detail.run is not None and not rows:
            empty.update(f"Run #{detail.run.id} has no facet weights for this user")
        elif detail.run is None:
            empty.update(NO_RUN)
        has = bool(rows)
        empty.set_class(has, "hidden")
        for widget in self.query("#bars, #evolution"):
            widget.set_class(not has, "hidden")
        if not has:
            return
        last = rows[-1]
        # The run's facets, also those absent for this user (no source): "not available"
        facets = list(dict.fromkeys([*detail.run.profile_facets, *shown_facets(rows)]))
        width = max(len(facet_label(f)) for f in facets)
        lines = [f"[b]Facet weights at the latest event[/b] ({day(last.ts)}, run #{detail.run.id})"]
        for facet in facets:
            value = last.weights.get(facet)
            color = COLORS.get(facet, OTHER_COLOR)
            shown = (f"[{color}]{bar(value, 30):<30}[/] {value:.3f}" if value is not None
                     else f"[dim]{'not available':<30}[/]")
            lines.append(f"{facet_label(facet):>{width}} {shown}")
        self.query_one("#bars", Static).update("\n".join(lines))
        points = thin(rows)
        x = days_since([p.ts for p in points])
        plot = self.query_one("#evolution", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        for facet in facets:
            # An absent facet has no stored weight: its points are skipped rather than drawn
            # as a made-up zero (and a facet absent everywhere has no line).
            have = [(d, p.weights[facet]) for d, p in zip(x, points, strict=True)
                    if facet in p.weights]
            if not have:
                continue
            plt.plot([d for d, _ in have], [w for _, w in have], label=facet_label(facet),
                     color=COLORS.get(facet, OTHER_COLOR), marker="braille")
        plt.title(f"weights over the user's events (days since {day(points[0].ts)})")
        plt.ylim(0, 1)
        plot.refresh()
