"""What the command line shows while a job runs, and how it is stopped: a rich progress bar on a
terminal (nothing when piped) and Ctrl-C turned into the job's cancel flag."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def _rate_column_class():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Units per second (profiles/s, batches/s), or per-unit seconds when slower than 1/s."""

        def render(self, task) -> Text:
            speed = task.speed
            if not speed:
                return Text("")
            return Text(f"{speed:.1f}/s" if speed >= 1 else f"{1 / speed:.1f} s each")

    return RateColumn


@contextmanager
def progress_bar(label: str, *, phases: bool = False
                  ) -> Iterator[Callable[[int, int, str], None]]:
    """A rich progress bar on a terminal; nothing when output is piped. With `phases`, each new
    phase name restarts the bar, so its rate and ETA are the phase's own."""
    if not sys.stderr.isatty():
        yield lambda done, total, phase: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    rate_column = _rate_column_class()
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(), TextColumn("{task.fields[phase]}"),
        rate_column(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    ) as bar:
        task = bar.add_task(label, total=1, phase="")
        current = [None]

        def update(done: int, total: int, phase: str) -> None:
            if phases and phase != current[0]:
                current[0] = phase
                bar.reset(task, total=max(total, 1), completed=done, phase=phase)
                return
            bar.update(task, completed=done, total=max(total, 1), phase=phase)

        yield update


@contextmanager
def cancel_on_sigint() -> Iterator[Callable[[], bool]]:
    """First Ctrl-C asks the job to stop at its next checkpoint; the job then raises."""
    from dynllm_tui.jobs.control import CancelFlag

    flag = CancelFlag()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag():
            raise KeyboardInterrupt
        flag.set()
        print("\nstopping at the next checkpoint (Ctrl-C again to force)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
