"""Home: how far the pipeline has got (profiles made / pending / failed, customers below the
first-snapshot threshold, runs and their test metrics, a training under way here or in another
process) and the next step to take."""

from __future__ import annotations

import os
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from dynllm_tui.jobs.training_lock import describe
from dynllm_tui.ui.formatting import metric, short_time
from dynllm_tui.ui.run_status import run_status
from storage.browse import HEADLINE_METRICS, PipelineStatus
from storage.browse.runs import FIRST_SNAPSHOT_LINES


class PipelinePanel(Static):
    DEFAULT_CSS = """
    PipelinePanel { height: auto; padding: 0 1; border: round $primary-darken-2;
                    border-title-color: $text-accent; }
    """

    def on_mount(self) -> None:
        self.border_title = "Pipeline"
        self.update("…")

    def show(self, status: PipelineStatus, has_data: bool,
             holder: dict[str, Any] | None = None, train_key: str = "4") -> None:
        """`holder`: who holds the workspace's training lock (`training_lock.training_in_progress`);
        runs left 'running' by a process that is gone are shown as interrupted."""
        grid = Table.grid(padding=(0, 2))
        grid.add_column()
        grid.add_column()
        profiles = Text.assemble(
            (f"{status.profiles_ok:,}", "bold"), " made · ",
            (f"{status.users_pending:,}", "bold"), " users pending · ",
            (f"{status.profiles_failed:,}", "bold red" if status.profiles_failed else "bold"),
            " failed",
        )
        grid.add_row("Profiles", profiles)
        if status.users_below_threshold:
            # Not pending: the snapshot policy waits for a customer's 5th line, by design.
            grid.add_row("", Text(
                f"{status.users_below_threshold:,} customer"
                f"{'' if status.users_below_threshold == 1 else 's'} with fewer than "
                f"{FIRST_SNAPSHOT_LINES} purchase lines: no profile yet by design",
                style="dim"))
        if not status.runs:
            grid.add_row("Runs", Text("none yet", style="italic"))
        else:
            runs = Table("run", "status", "finished", *HEADLINE_METRICS, box=None,
                         padding=(0, 1), show_edge=False, header_style="bold")
            for run in status.runs[:4]:
                name = f"#{run.id}{' *' if run.id == status.active_run_id else ''}"
                headline = run.headline
                shown = run_status(run.status, run.id, run.created_at, holder)
                runs.add_row(name, Text(shown, style="yellow" if shown == "interrupted" else ""),
                             short_time(run.finished_at)[:10],
                             *(metric(headline.get(m)) for m in HEADLINE_METRICS))
            grid.add_row("Runs", runs)
        if holder is not None:
            from dynllm_tui.jobs.child_process import child_pids

            ours = holder.get("pid") == os.getpid() or holder.get("pid") in child_pids()
            where = "in this app" if ours else "in another process"
            grid.add_row("Training", Text(f"training in progress {where} ({describe(holder)})",
                                          style="bold yellow"))
        grid.add_row("Next", Text(self.next_step(status, has_data, train_key), style="italic"))
        self.update(grid)

    @staticmethod
    def next_step(status: PipelineStatus, has_data: bool, train_key: str = "4") -> str:
        if not has_data:
            return "import data or build the demo"
        if status.profiles_ok == 0:
            return (f"make profiles (dynllm-tui profiles), then train ({train_key}: Training, "
                    "or dynllm-tui train)")
        if status.runs_done == 0:
            return f"train a model ({train_key}: Training, or dynllm-tui train)"
        return "browse users (2), compare runs (3), export recommendations (e)"
