"""User detail: the facet relevance weights (attention over the four profile facets) as bars at
the user's latest event, and their evolution over the user's events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from dynllm_tui.ui.common.empty_state import EmptyState
from dynllm_tui.ui.formatting import NO_RUN, bar, day
from dynllm_tui.ui.user_detail.plots import days_since, thin
from storage.browse import FACET_LABELS, FACETS, UserDetail

COLORS = {"crowd_segment": "cyan", "interests": "magenta", "categories": "green",
          "brands": "orange"}


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
        lines = [f"[b]Facet weights at the latest event[/b] ({day(last.ts)}, run #{detail.run.id})"]
        for facet in FACETS:
            value = getattr(last, facet)
            lines.append(f"{FACET_LABELS[facet]:>13} [{COLORS[facet]}]{bar(value, 30):<30}"
                         f"[/] {value:.3f}")
        self.query_one("#bars", Static).update("\n".join(lines))
        points = thin(rows)
        x = days_since([p.ts for p in points])
        plot = self.query_one("#evolution", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        for facet in FACETS:
            plt.plot(x, [getattr(p, facet) for p in points], label=FACET_LABELS[facet],
                     color=COLORS[facet], marker="braille")
        plt.title(f"weights over the user's events (days since {day(points[0].ts)})")
        plt.ylim(0, 1)
        plot.refresh()
