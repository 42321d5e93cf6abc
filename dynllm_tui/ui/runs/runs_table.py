"""Runs: one row per run with its status and headline test metrics; * marks the active run."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from dynllm_tui.ui.formatting import metric, short_time
from storage.browse import HEADLINE_METRICS, RunSummary


class RunsTable(DataTable):
    DEFAULT_CSS = """
    RunsTable { height: auto; max-height: 10; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)

    def on_mount(self) -> None:
        self.add_column("run", key="run")
        for name in ("status", "finished", "epochs", "device", *HEADLINE_METRICS):
            self.add_column(name, key=name)

    def show(self, runs: list[RunSummary], active_id: int | None) -> None:
        selected = self.selected_run()
        self.clear()
        for run in runs:
            headline = run.headline
            name = Text(f"#{run.id}{' *' if run.id == active_id else ''}",
                        style="bold" if run.id == active_id else "")
            self.add_row(
                name, run.status, short_time(run.finished_at),
                "—" if run.epochs_done is None else str(run.epochs_done), run.device or "—",
                *(Text(metric(headline.get(m)), justify="right") for m in HEADLINE_METRICS),
                key=str(run.id),
            )
        if selected is not None and str(selected) in {str(r.id) for r in runs}:
            self.move_cursor(row=self.get_row_index(str(selected)))

    def selected_run(self) -> int | None:
        if not self.row_count:
            return None
        return int(self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value)
