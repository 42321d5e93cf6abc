"""Training: what is going on (idle, running, another process training, the last run) and the
progress of a running training: epochs done of N, batches of the current stage."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Static

STAGES = {"train": "training", "val": "validation", "test": "test", "epoch": "epoch done"}


class TrainingProgress(Vertical):
    DEFAULT_CSS = """
    TrainingProgress { height: auto; padding: 0 1; border: round $primary-darken-2;
                       border-title-color: $text-accent; }
    TrainingProgress #train-status { height: auto; }
    TrainingProgress Horizontal { height: 1; }
    TrainingProgress .bar-label { width: 20; height: 1; color: $text-muted; }
    TrainingProgress ProgressBar { width: 1fr; }
    """

    def compose(self) -> Iterable[Any]:
        yield Static("", id="train-status")
        with Horizontal():
            yield Static("epoch", id="epoch-label", classes="bar-label")
            yield ProgressBar(id="epoch-bar", show_eta=False)
        with Horizontal():
            yield Static("batches", id="stage-label", classes="bar-label")
            yield ProgressBar(id="stage-bar", show_eta=False)

    def on_mount(self) -> None:
        self.border_title = "Progress"

    def set_status(self, text: str) -> None:
        self.query_one("#train-status", Static).update(text)

    def reset(self, epochs: int) -> None:
        self.query_one("#epoch-label", Static).update(f"epoch 0/{epochs}")
        self.query_one("#epoch-bar", ProgressBar).update(total=epochs, progress=0)
        self.query_one("#stage-label", Static).update("starting…")
        self.query_one("#stage-bar", ProgressBar).update(total=None, progress=0)

    def show(self, progress: Any, epochs: int, epochs_done: int) -> None:
        """One `models.training.loop.Progress` report (the newest of a drain)."""
        self.query_one("#epoch-bar", ProgressBar).update(total=epochs, progress=epochs_done)
        if progress.stage == "test":
            self.query_one("#epoch-label", Static).update(f"test ({epochs_done} epochs)")
        elif progress.stage != "epoch":
            self.query_one("#epoch-label", Static).update(f"epoch {progress.epoch}/{epochs}")
        stage = STAGES.get(progress.stage, progress.stage)
        if progress.stage == "epoch":
            self.query_one("#epoch-label", Static).update(f"epoch {epochs_done}/{epochs}")
            self.query_one("#stage-label", Static).update(stage)
            return
        label = stage if progress.loss is None else f"{stage} {progress.loss:.4f}"
        self.query_one("#stage-label", Static).update(label)
        self.query_one("#stage-bar", ProgressBar).update(
            total=max(progress.n_batches, 1), progress=progress.batch)

    def finish(self, epochs_done: int, epochs: int, label: str) -> None:
        self.query_one("#epoch-label", Static).update(f"epoch {epochs_done}/{epochs}")
        self.query_one("#epoch-bar", ProgressBar).update(total=epochs, progress=epochs_done)
        self.query_one("#stage-label", Static).update(label)
