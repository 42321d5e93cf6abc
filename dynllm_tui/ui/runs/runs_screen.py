"""Runs: every training run with its metrics beside baselines and ablations; choose the active
run (the one whose recommendations the app and the exports use)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from textual import on, work
from textual.widgets import DataTable
from textual.worker import get_current_worker

from dynllm_tui.jobs.training_lock import training_in_progress
from dynllm_tui.ui.common.base_screen import WorkbenchScreen
from dynllm_tui.ui.common.empty_state import EmptyState
from dynllm_tui.ui.formatting import NO_RUN
from dynllm_tui.ui.keys import bindings
from dynllm_tui.ui.run_status import run_status
from dynllm_tui.ui.runs.run_report import RunReport
from dynllm_tui.ui.runs.runs_table import RunsTable
from storage.browse import RunSummary, active_run, list_runs, set_active_run


class RunsScreen(WorkbenchScreen):
    SCOPE = "runs"
    SECTION = "runs"
    BINDINGS = bindings("runs")
    DEFAULT_CSS = """
    RunsScreen .hidden { display: none; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunSummary] = []
        self.active_id: int | None = None

    def compose_body(self) -> Iterable[Any]:
        yield EmptyState(NO_RUN + "\nRuns appear here with their metrics; make one active "
                         "to see its recommendations.", id="no-runs", classes="hidden")
        yield RunsTable(id="runs")
        yield RunReport(id="report")

    def on_mount(self) -> None:
        self.query_one(RunsTable).focus()
        self.refresh_data()

    def on_screen_resume(self) -> None:
        self.refresh_data()

    def refresh_data(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def load(self) -> None:
        try:
            runs = self.fetch(list_runs)
            active = self.fetch(active_run)
            holder = training_in_progress(self.workbench.db)
        except Exception as exc:
            self.fail("Runs", exc)
            return
        # A run left 'running' by a process that is gone shows as interrupted (display only).
        runs = [replace(r, status=run_status(r.status, r.id, r.created_at, holder))
                for r in runs]
        if not get_current_worker().is_cancelled:
            self.deliver(self.show, runs, active.id if active else None)

    def show(self, runs: list[RunSummary], active_id: int | None) -> None:
        self.runs = runs
        self.active_id = active_id
        self.refresh_bindings()
        has = bool(runs)
        self.query_one("#no-runs").set_class(has, "hidden")
        self.query_one(RunsTable).set_class(not has, "hidden")
        self.query_one(RunReport).set_class(not has, "hidden")
        self.query_one(RunsTable).show(runs, active_id)
        self.show_selected()

    def show_selected(self) -> None:
        selected = self.query_one(RunsTable).selected_run()
        self.query_one(RunReport).show(next((r for r in self.runs if r.id == selected), None))

    @on(DataTable.RowHighlighted, "#runs")
    def run_highlighted(self) -> None:
        self.show_selected()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "activate":
            return bool(self.runs)
        return True

    def action_activate(self) -> None:
        selected = self.query_one(RunsTable).selected_run()
        if selected is None:
            self.notify(NO_RUN, severity="warning")
            return
        self.activate(selected)

    @work(thread=True, exclusive=True, group="activate", exit_on_error=False)
    def activate(self, run_id: int) -> None:
        try:
            self.fetch(set_active_run, run_id)
        except Exception as exc:
            self.fail("Active run", exc)
            return
        self.deliver(self.notify, f"Run #{run_id} is now the active run", title="Runs")
        self.deliver(self.refresh_data)
