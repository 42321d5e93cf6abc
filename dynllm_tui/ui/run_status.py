"""How a run's status is shown: a run left 'running' by a gone process reads 'interrupted'."""

from __future__ import annotations

from typing import Any


def run_status(status: str, run_id: int, created_at: str | None,
               holder: dict[str, Any] | None) -> str:
    """The status to show for a run: 'interrupted' for a run left 'running' by a process that is
    gone (no lock held, or the lock's holder started after the run was created and is not
    resuming it). Display only; the stored status stays, and `dynllm-tui train --resume RUN`
    continues such a run."""
    if status != "running":
        return status
    if holder is None:
        return "interrupted"
    if holder.get("run_id") is not None:
        return "running" if holder["run_id"] == run_id else "interrupted"
    started = holder.get("started_at")
    if started and created_at and created_at < started:
        return "interrupted"  # created before the live training started: not its run
    return "running"
