"""Home: how far the pipeline has got (profiles made / pending / failed, runs and their test
metrics) and the next step to take."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from dynllm_tui.ui.formatting import metric, short_time
from storage.browse import HEADLINE_METRICS, PipelineStatus


class PipelinePanel(Static):
    DEFAULT_CSS = """
    PipelinePanel { height: auto; padding: 0 1; border: round $primary-darken-2;
                    border-title-color: $text-accent; }
    """

    def on_mount(self) -> None:
        self.border_title = "Pipeline"
        self.update("…")

    def show(self, status: PipelineStatus, has_data: bool) -> None:
        grid = Table.grid(padding=(0, 2))
        grid.add_column()
        grid.add_column()
        profiles = Text.assemble(
            (f"{status.profiles_ok:,}", "bold"), " made · ",
            (f"{status.users_without_profile:,}", "bold"), " users pending · ",
            (f"{status.profiles_failed:,}", "bold red" if status.profiles_failed else "bold"),
            " failed",
        )
        grid.add_row("Profiles", profiles)
        if not status.runs:
            grid.add_row("Runs", Text("none yet", style="italic"))
        else:
            runs = Table("run", "status", "finished", *HEADLINE_METRICS, box=None,
                         padding=(0, 1), show_edge=False, header_style="bold")
            for run in status.runs[:4]:
                name = f"#{run.id}{' *' if run.id == status.active_run_id else ''}"
                headline = run.headline
                runs.add_row(name, run.status, short_time(run.finished_at)[:10],
                              *(metric(headline.get(m)) for m in HEADLINE_METRICS))
            grid.add_row("Runs", runs)
        grid.add_row("Next", Text(self.next_step(status, has_data), style="italic"))
        self.update(grid)

    @staticmethod
    def next_step(status: PipelineStatus, has_data: bool) -> str:
        if not has_data:
            return "import data or build the demo"
        if status.profiles_ok == 0:
            return "make profiles (dynllm-tui profiles), then train (dynllm-tui train)"
        if status.runs_done == 0:
            return "train a model (dynllm-tui train)"
        return "browse users (2), compare runs (3), export recommendations (e)"
