"""User detail: how the user's memory vector moved: drift (cosine distance from the previous
state) over time, and the 2-D trajectory (one PCA over all users' states)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.containers import Horizontal, Vertical
from textual_plotext import PlotextPlot

from dynllm_tui.ui.common.empty_state import EmptyState
from dynllm_tui.ui.formatting import NO_RUN, day
from dynllm_tui.ui.user_detail.plots import days_since, thin
from storage.browse import UserDetail


class MemoryView(Vertical):
    DEFAULT_CSS = """
    MemoryView Horizontal { height: 1fr; }
    MemoryView PlotextPlot { width: 1fr; height: 1fr; min-height: 6; }
    MemoryView .hidden { display: none; }
    """

    def compose(self) -> Iterable[Any]:
        yield EmptyState(NO_RUN, id="no-memory")
        with Horizontal(id="memory-plots", classes="hidden"):
            yield PlotextPlot(id="drift")
            yield PlotextPlot(id="trajectory")

    def on_mount(self) -> None:
        detail = getattr(self.screen, "detail", None)
        if detail is not None:
            self.show(detail)

    def show(self, detail: UserDetail) -> None:
        empty = self.query_one("#no-memory", EmptyState)
        points = [p for p in detail.memory if p.drift is not None or p.x is not None]
        if detail.run is None:
            empty.update(NO_RUN)
        elif not points:
            empty.update(f"Run #{detail.run.id} has no memory trace for this user")
        has = bool(points)
        empty.set_class(has, "hidden")
        self.query_one("#memory-plots").set_class(not has, "hidden")
        if not has:
            return
        points = thin(points)
        drift = self.query_one("#drift", PlotextPlot)
        plt = drift.plt
        plt.clear_data()
        plt.clear_figure()
        with_drift = [p for p in points if p.drift is not None]
        plt.plot(days_since([p.ts for p in with_drift]), [p.drift for p in with_drift],
                 marker="braille", color="cyan")
        plt.title(f"drift (days since {day(points[0].ts)})")
        drift.refresh()
        trajectory = self.query_one("#trajectory", PlotextPlot)
        plt = trajectory.plt
        plt.clear_data()
        plt.clear_figure()
        xy = [p for p in points if p.x is not None and p.y is not None]
        if xy:
            plt.plot([p.x for p in xy], [p.y for p in xy], marker="braille", color="magenta")
            plt.scatter([xy[0].x], [xy[0].y], marker="o", color="green", label="first")
            plt.scatter([xy[-1].x], [xy[-1].y], marker="x", color="red", label="latest")
        plt.title("2-D trajectory (PCA)")
        trajectory.refresh()
