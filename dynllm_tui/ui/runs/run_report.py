"""Runs: the selected run's settings and its model report (the run beside baselines and
ablations, per protocol, with buy-again (repeat) and discover (explore) columns and ± over
seeds), headed by the dataset's repeat ratio and default protocol; or its test metrics where no
report was stored."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from dynllm_tui.ui.formatting import metric
from storage.browse import RunSummary

REPORT_COLUMNS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr",
                  "repeat:recall@20", "repeat:ndcg@20", "explore:recall@20", "explore:ndcg@20")
COLUMN_LABELS = {"repeat:recall@20": "repeat R@20", "repeat:ndcg@20": "repeat N@20",
                 "explore:recall@20": "explore R@20", "explore:ndcg@20": "explore N@20"}
CONFIG_KEYS = ("epochs", "batch_size", "lr", "patience", "seed", "device")
# no_profiles is left to "with/without profiles" below, which also covers a workspace without
MODEL_SWITCHES = ("repeat_term", "text_term", "no_distill", "no_time_projection", "no_neighbours")


def run_settings(config: dict[str, Any]) -> str:
    """The settings a run was trained with, as one line: training options (stored under
    "train" by the training job, flat in older runs), the model switches that are on, the facets
    when not all four, and whether profiles were used."""
    train = config.get("train") if isinstance(config.get("train"), dict) else config
    parts = [f"{k}={train[k]}" for k in CONFIG_KEYS if k in train]
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    parts += [k.replace("_", " ") for k in MODEL_SWITCHES if model.get(k)]
    facets = model.get("facets")
    if isinstance(facets, list | tuple) and 0 < len(facets) < 4:
        parts.append("facets " + ",".join(map(str, facets)))
    if "with_profiles" in config:
        parts.append("with profiles" if config["with_profiles"] else "without profiles")
    if config.get("baselines_note"):
        parts.append(str(config["baselines_note"]))
    return ", ".join(parts)


class RunReport(Vertical):
    DEFAULT_CSS = """
    RunReport { height: 1fr; border: round $primary-darken-2; border-title-color: $text-accent; }
    RunReport #run-config { height: auto; padding: 0 1; }
    RunReport DataTable { height: 1fr; }
    """

    def compose(self) -> Iterable[Any]:
        yield Static(id="run-config")
        yield DataTable(id="report", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.border_title = "Report"
        self.query_one(DataTable).add_columns(
            "method", "protocol", *(COLUMN_LABELS.get(c, c) for c in REPORT_COLUMNS))

    def show(self, run: RunSummary | None) -> None:
        config = self.query_one("#run-config", Static)
        table = self.query_one(DataTable)
        table.clear()
        if run is None:
            self.border_title = "Report"
            config.update("")
            return
        self.border_title = f"Run #{run.id} · {run.model} · {run.status}"
        lines = [run_settings(run.config) or "settings: not recorded (a run from before they were)"]
        if run.best_epoch is not None:
            lines.append(f"best epoch {run.best_epoch} of {run.epochs_done or '?'}"
                         + (f" · {run.seconds:,.0f} s" if run.seconds else ""))
        if run.error:
            lines.append(f"[red]{escape(run.error)}[/red]")
        rows = run.report or self._rows_from_metrics(run)
        if not rows:
            lines.append("No test metrics stored for this run.")
        lines.extend(escape(line) for line in _report_header(rows))
        config.update("\n".join(lines))
        best = {  # best value per protocol and column, marked with *
            (p, c): max((r[c] for r in rows if r.get("protocol", "full") == p
                         and isinstance(r.get(c), int | float)), default=None)
            for p in {r.get("protocol", "full") for r in rows} for c in REPORT_COLUMNS
        }
        for r in rows:
            protocol = r.get("protocol", "full")
            cells = []
            for c in REPORT_COLUMNS:
                value = r.get(c)
                text = metric(value) if isinstance(value, int | float) else (
                    "n/a" if c in r else "—")  # n/a: no events of that kind
                sd = r.get(f"{c}_sd")
                if isinstance(value, int | float) and sd is not None and r.get("n_seeds", 1) > 1:
                    text += f"±{metric(sd)}"
                star = value is not None and len(rows) > 1 and value == best[protocol, c]
                cells.append(Text(text + ("*" if star else " "), justify="right",
                                  style="bold" if star else ""))
            table.add_row(str(r.get("method", run.model)), str(protocol), *cells)

    @staticmethod
    def _rows_from_metrics(run: RunSummary) -> list[dict[str, Any]]:
        metrics = run.test_metrics
        if not metrics:
            return []
        if all(isinstance(v, dict) for v in metrics.values()):
            return [{"method": run.model, "protocol": p, **m} for p, m in metrics.items()]
        return [{"method": run.model, "protocol": "full", **metrics}]


def _report_header(rows: list[dict[str, Any]]) -> list[str]:
    """The repeat ratio, the default protocol and each validation choice, from the rows."""
    first = rows[0] if rows else {}
    lines = []
    if isinstance(first.get("repeat_ratio"), int | float):
        train = first.get("train_repeat_ratio")
        lines.append(f"repeat ratio {first['repeat_ratio']:.1%}"
                     + (f" (training part {train:.1%})" if isinstance(train, int | float) else "")
                     + f" · {first.get('default_reason', '')}")
    seen = set()
    for r in rows:
        choice = r.get("choice")
        if isinstance(choice, dict) and r.get("method") not in seen:
            seen.add(r.get("method"))
            value = choice.get("validation")
            lines.append(f"{r.get('method')}: chose {choice.get('chosen')} on validation "
                         f"{choice.get('metric')} "
                         + (f"{value:.4f}" if isinstance(value, int | float) else "?"))
    n_seeds = max((r.get("n_seeds", 1) for r in rows if isinstance(r.get("n_seeds"), int)),
                  default=1)
    if n_seeds > 1:
        lines.append(f"{n_seeds} seeds, mean ± sd; significant = means more than 2 pooled sd "
                     "apart")
    return lines
