"""What a screen may ask of the app it runs in.

Screens talk to the app through this protocol, not through `dynllm_tui.app`, so the app can
import its screens without the screens importing the app back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from dynllm_tui.ui.reader import WorkspaceReader


class Workbench(Protocol):
    db: str | None
    db_path: str  # the workspace path as jobs and the training lock name it
    reader: WorkspaceReader  # the shared read connection (worker threads only)
    users_search: str
    build_demo_on_start: bool
    demo_options: dict[str, Any]

    def key_display(self, binding_id: str) -> str: ...

    def show_error(self, title: str, exc: BaseException) -> None: ...

    def workspace_changed(self, kind: str, *, run_id: int | None = None,
                          user_ids: Iterable[int] = (),
                          holder: dict[str, Any] | None = None) -> None: ...

    def background_job_started(self) -> None: ...

    def background_job_finished(self) -> None: ...
