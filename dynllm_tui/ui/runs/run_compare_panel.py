"""Runs: two runs side by side (`run_compare.compare_runs`), shown in place of the report after
the compare key was pressed on one run and then on another."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import DataTable

from dynllm_tui.ui.runs.run_compare import NOT_COMPARABLE, compare_runs
from storage.browse import RunSummary


class RunComparePanel(Vertical):
    DEFAULT_CSS = """
    RunComparePanel { height: 1fr; border: round $primary-darken-2;
                      border-title-color: $text-accent; }
    RunComparePanel DataTable { height: 1fr; }
    """

    def compose(self) -> Iterable[Any]:
        yield DataTable(id="compare", cursor_type="row", zebra_stripes=True)

    def show(self, a: RunSummary, b: RunSummary) -> None:
        self.border_title = f"Run #{a.id} vs run #{b.id}  (move in the runs list for the report)"
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns("", f"run #{a.id}", f"run #{b.id}", f"difference (#{b.id} − #{a.id})")
        for row in compare_runs(a, b):
            style = "bold red" if NOT_COMPARABLE in row.difference else (
                "green" if row.difference.startswith("+") else
                "red" if row.difference.startswith("-") else "")
            table.add_row(row.what, Text(row.run_a, justify="right"),
                          Text(row.run_b, justify="right"), Text(row.difference, style=style))
