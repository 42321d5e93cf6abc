"""Training: the hand-over between the training thread and the screen.

`train_job` reports after every batch, hundreds of times a second on a GPU; posting each report
to the event loop would starve it. The job's callback only records into this relay (a lock and
an append), and the screen drains it on a timer (10 times a second), so the UI's work is bounded
whatever the batch rate, and no training-loss point is lost for the plot.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EpochPoint:
    epoch: int
    loss: float | None
    metrics: dict[str, float]


@dataclass
class RelayUpdate:
    """What happened since the last drain."""

    latest: Any = None  # the newest models.training.loop.Progress, or None
    losses: list[float] = field(default_factory=list)  # training-batch losses, in order
    epochs: list[EpochPoint] = field(default_factory=list)  # finished epochs, in order

    def __bool__(self) -> bool:
        return self.latest is not None or bool(self.losses) or bool(self.epochs)


class ProgressRelay:
    """The `progress` callback of `train_job` (called from the worker thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = RelayUpdate()

    def __call__(self, progress: Any) -> None:
        with self._lock:
            pending = self._pending
            pending.latest = progress
            if progress.stage == "train" and progress.loss is not None:
                pending.losses.append(float(progress.loss))
            elif progress.stage == "epoch":
                metrics = {k: float(v) for k, v in (progress.metrics or {}).items()
                           if isinstance(v, int | float)}
                loss = None if progress.loss is None else float(progress.loss)
                pending.epochs.append(EpochPoint(progress.epoch, loss, metrics))

    def drain(self) -> RelayUpdate:
        """Everything reported since the previous drain (on the UI thread)."""
        with self._lock:
            update, self._pending = self._pending, RelayUpdate()
        return update
