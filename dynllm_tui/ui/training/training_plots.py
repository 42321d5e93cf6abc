"""Training: the live plots, training loss per batch and validation Recall@10 / NDCG@10 per
epoch. Redrawn at most twice a second: a plotext redraw costs far more than a progress bar."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from textual.containers import Vertical
from textual_plotext import PlotextPlot

from dynllm_tui.ui.training.progress_relay import EpochPoint
from dynllm_tui.ui.user_detail.plots import thin

REDRAW_EVERY_S = 0.5
VAL_METRICS = (("recall@10", "Recall@10", "cyan"), ("ndcg@10", "NDCG@10", "magenta"))


class TrainingPlots(Vertical):
    DEFAULT_CSS = """
    TrainingPlots { height: 1fr; }
    TrainingPlots PlotextPlot { height: 1fr; min-height: 5; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.losses: list[float] = []
        self.epochs: list[EpochPoint] = []
        self._drawn_at = 0.0
        self._dirty = False

    def compose(self) -> Iterable[Any]:
        yield PlotextPlot(id="loss-plot")
        yield PlotextPlot(id="val-plot")

    def on_mount(self) -> None:
        self.redraw()

    def clear(self) -> None:
        self.losses = []
        self.epochs = []
        self.redraw()

    def add(self, losses: list[float], epochs: list[EpochPoint], *, force: bool = False) -> None:
        """New points from the relay; the redraw waits until the last one is old enough."""
        self.losses.extend(losses)
        self.epochs.extend(epochs)
        self._dirty = self._dirty or bool(losses or epochs)
        if self._dirty and (force or epochs
                            or time.monotonic() - self._drawn_at >= REDRAW_EVERY_S):
            self.redraw()

    def redraw(self) -> None:
        self._drawn_at = time.monotonic()
        self._dirty = False
        loss = self.query_one("#loss-plot", PlotextPlot)
        plt = loss.plt
        plt.clear_data()
        plt.clear_figure()
        if self.losses:
            points = thin(list(enumerate(self.losses, start=1)))
            plt.plot([x for x, _ in points], [y for _, y in points], marker="braille",
                     color="orange")
        plt.title(f"training loss ({len(self.losses):,} batches)" if self.losses
                  else "training loss (per batch)")
        loss.refresh()
        val = self.query_one("#val-plot", PlotextPlot)
        plt = val.plt
        plt.clear_data()
        plt.clear_figure()
        xs = [e.epoch for e in self.epochs]
        for key, label, color in VAL_METRICS:
            ys = [e.metrics.get(key) for e in self.epochs]
            if ys and all(y is not None for y in ys):
                plt.plot(xs, ys, marker="braille" if len(xs) > 1 else "dot", color=color,
                         label=label)
        if xs:
            plt.xticks(sorted(set(xs))[:: max(1, len(xs) // 8)])
        plt.title("validation per epoch")
        val.refresh()
