"""Runs: every training run with its metrics beside baselines and ablations; choose the active
run (the one whose recommendations the app and the exports use); compare two runs (the compare
key on one run, then on another)."""

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
from dynllm_tui.ui.runs.run_compare_panel import RunComparePanel
from dynllm_tui.ui.runs.run_report import RunReport
from dynllm_tui.ui.runs.runs_table import RunsTable
from storage.browse import RunSummary, active_run, list_runs, set_active_run


class RunsScreen(WorkbenchScreen):
    SCOPE = "runs"
    SECTION = "runs"
    BINDINGS = bindings("runs")
    CONCERNS = frozenset({"run", "activate", "training"})
    DEFAULT_CSS = """
    RunsScreen .hidden { display: none; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[RunSummary] = []
        self.active_id: int | None = None
        self.compare_from: int | None = None  # the run marked by the compare key

    def compose_body(self) -> Iterable[Any]:
        yield EmptyState(NO_RUN + "\nRuns appear here with their metrics; make one active "
                         "to see its recommendations.", id="no-runs", classes="hidden")
        yield RunsTable(id="runs")
        yield RunReport(id="report")
        yield RunComparePanel(id="comparison", classes="hidden")

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
        self.query_one(RunComparePanel).set_class(True, "hidden")
        if self.compare_from not in {r.id for r in runs}:
            self.compare_from = None
        self.query_one(RunsTable).show(runs, active_id)
        self.show_selected()

    def show_selected(self) -> None:
        selected = self.query_one(RunsTable).selected_run()
        self.query_one(RunComparePanel).set_class(True, "hidden")
        self.query_one(RunReport).set_class(not self.runs, "hidden")
        self.query_one(RunReport).show(next((r for r in self.runs if r.id == selected), None))

    @on(DataTable.RowHighlighted, "#runs")
    def run_highlighted(self) -> None:
        self.show_selected()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "activate":
            return bool(self.runs)
        if action == "compare":
            return len(self.runs) > 1
        return True

    def action_activate(self) -> None:
        selected = self.query_one(RunsTable).selected_run()
        if selected is None:
            self.notify(NO_RUN, severity="warning")
            return
        self.activate(selected)

    def action_compare(self) -> None:
        """First press: mark the selected run; second press on another run: show both side by
        side in place of the report; on the marked run again: unmark it."""
        selected = self.query_one(RunsTable).selected_run()
        by_id = {r.id: r for r in self.runs}
        if selected not in by_id:
            self.notify(NO_RUN, severity="warning")
            return
        if self.compare_from is None or self.compare_from not in by_id:
            self.compare_from = selected
            self.notify(f"Run #{selected} marked: select another run and press the compare key "
                        "again", title="Compare")
            return
        if self.compare_from == selected:
            self.compare_from = None
            self.notify(f"Run #{selected} unmarked", title="Compare")
            return
        first, self.compare_from = by_id[self.compare_from], None
        self.query_one(RunReport).set_class(True, "hidden")
        panel = self.query_one(RunComparePanel)
        panel.set_class(False, "hidden")
        panel.show(first, by_id[selected])

    def action_copy_runs(self) -> None:
        """Copy the runs table as TSV through the terminal's clipboard (OSC 52)."""
        from dynllm_tui.ui.common.clipboard import runs_tsv
        from storage.browse import HEADLINE_METRICS

        if not self.runs:
            self.notify(f"Nothing copied: {NO_RUN}", title="Copy", severity="warning")
            return
        runs = [replace(r, active=r.id == self.active_id) for r in self.runs]
        self.app.copy_to_clipboard(runs_tsv(runs, HEADLINE_METRICS))
        self.notify(f"Copied {len(runs)} runs as TSV, with a header line", title="Copy")

    @work(thread=True, exclusive=True, group="activate", exit_on_error=False)
    def activate(self, run_id: int) -> None:
        try:
            self.fetch(set_active_run, run_id)
        except Exception as exc:
            self.fail("Active run", exc)
            return
        self.deliver(self.notify, f"Run #{run_id} is now the active run", title="Runs")
        # Every screen showing the active run's recommendations follows (this one included).
        self.deliver(self.workbench.workspace_changed, "activate", run_id=run_id)
