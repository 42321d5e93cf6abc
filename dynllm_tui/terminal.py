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


class SigintCancel:
    """The cancel flag that Ctrl-C sets, with a commit point: a job that calls `commit_point()`
    right before its COMMIT learns whether a Ctrl-C came first (then it rolls back); after the
    commit point every Ctrl-C is answered "finishing" and the job completes."""

    def __init__(self) -> None:
        from dynllm_tui.jobs.control import CancelFlag

        self._flag = CancelFlag()
        self.committing = False
        self.interrupted_while_committing = False

    def __call__(self) -> bool:
        return self._flag()

    def set(self) -> None:
        self._flag.set()

    def commit_point(self) -> bool:
        """True: no Ctrl-C so far, and later ones will not stop the job. False: cancel."""
        # Ctrl-C is held back while checking and setting, so no signal falls between the two;
        # a held-back one is delivered after, and its handler sees `committing`.
        block = getattr(signal, "pthread_sigmask", None)
        if block is not None:
            block(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            if self._flag():
                return False
            self.committing = True
            return True
        finally:
            if block is not None:
                block(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def cancel_on_sigint() -> Iterator[SigintCancel]:
    """First Ctrl-C asks the job to stop at its next checkpoint; the job then raises. After the
    job's commit point (see SigintCancel) Ctrl-C only says that the job is finishing."""
    flag = SigintCancel()
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag.committing:
            flag.interrupted_while_committing = True
            print("\nalready past the commit point: finishing (nothing will be undone)",
                  file=sys.stderr)
            return
        if flag():
            raise KeyboardInterrupt
        flag.set()
        print("\nstopping at the next checkpoint (Ctrl-C again to force)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
