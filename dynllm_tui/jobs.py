"""Jobs: plain functions that wire storage and models, with a progress callback and a cancel flag.

The CLI drives them with a progress bar; the UI runs them in thread workers. They never print.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from storage.importer import ImportSummary, run_import
from storage.presets import preset_spec
from storage.workspace import Workspace

Progress = Callable[[int, int, str], None]


class CancelFlag:
    """Set from another thread (Ctrl-C handler, UI cancel button); jobs poll it between chunks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


def import_job(
    db_path: str | Path | None,
    path: str | Path | None,
    *,
    preset: str = "generic",
    mapping: list[str] | None = None,
    items: str | Path | None = None,
    users: str | Path | None = None,
    time_format: str | None = None,
    fmt: str | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ImportSummary:
    """Import one file (or the Complete Journey tables) into the workspace at `db_path`."""
    spec = preset_spec(
        preset, path, mapping=mapping, items_path=items, users_path=users,
        time_format=time_format, fmt=fmt,
    )
    with Workspace.open(db_path) as ws:
        return run_import(ws, spec, progress=progress, should_cancel=cancel)


def demo_data_path() -> Path:
    """The Online Retail slice shipped inside the package (see data/SOURCE.md for attribution)."""
    return Path(__file__).parent / "data" / "online_retail_demo.csv.gz"


def default_demo_workspace() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("dynllm-tui", appauthor=False)) / "demo.db"


def demo_job(
    db_path: str | Path | None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ImportSummary:
    """Build the demo workspace. For now: import the shipped slice (profiles, training and replay
    join this job as they land)."""
    return import_job(
        db_path or default_demo_workspace(), demo_data_path(), preset="online-retail",
        progress=progress, cancel=cancel,
    )
