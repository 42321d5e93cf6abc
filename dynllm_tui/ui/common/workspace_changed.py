"""The one way screens learn that the workspace changed: a `WorkspaceChanged` message.

Whatever finishes a job in the app (the Training screen's worker, the demo build's phases, the
profiles job committing snapshots, the activate action, the app's watch on the training lock)
calls `app.workspace_changed(kind, ...)` once; the app posts the message to every screen it
holds (each mode's stack and the installed screens, not only the one on display), and each
screen's single handler reloads what it shows if the change concerns it
(`WorkbenchScreen.CONCERNS`). No screen polls for freshness.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

# What changed. "training" is the workspace's training lock (a training started or ended, in
# this app or in another process); "run" a run finished (its recommendations are stored).
KINDS = frozenset({"import", "profiles", "run", "activate", "training"})


@dataclass(frozen=True)
class Change:
    """What a job changed: its kind, and the ids it concerns (empty: possibly all of them)."""

    kind: str
    run_id: int | None = None
    user_ids: frozenset[int] = field(default_factory=frozenset)
    holder: dict[str, Any] | None = None  # for "training": the lock's holder now, if any

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown workspace change {self.kind!r}: one of "
                             f"{', '.join(sorted(KINDS))}")

    def concerns_user(self, user_id: int) -> bool:
        return not self.user_ids or user_id in self.user_ids


class WorkspaceChanged(Message, bubble=False):
    """Posted to each screen; it does not bubble up to the app (the app sent it)."""

    def __init__(self, change: Change) -> None:
        super().__init__()
        self.change = change
