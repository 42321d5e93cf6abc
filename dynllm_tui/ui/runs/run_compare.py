"""Two runs side by side: the settings that differ, best validation Recall@10, the test metrics
(full-ranking protocol) and whether both were trained on the same data (same fingerprint, same
split); figures from runs on different data are marked not comparable.

Plain functions over stored `RunSummary`s (no Textual, no torch), so the comparison is testable
and usable outside the Runs screen."""

from __future__ import annotations

from typing import Any, NamedTuple

from dynllm_tui.ui.formatting import metric
from storage.browse import RunSummary

COMPARED_METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
# Stored in a run's config but not a setting it was trained with.
NOT_SETTINGS = {"baselines_note"}
NOT_COMPARABLE = "not comparable"
_MISSING = object()  # a setting one run's config does not have at all


class CompareRow(NamedTuple):
    what: str
    run_a: str
    run_b: str
    difference: str


def run_setting_values(config: dict[str, Any]) -> dict[str, Any]:
    """Every setting in a run's config, one flat name each: training options by their own name
    (stored under "train" by the training job, flat in older runs, so both compare alike),
    model options as "model.<name>", the rest (model_name, with_profiles, ...) as stored."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in NOT_SETTINGS:
            continue
        if key == "train" and isinstance(value, dict):
            out.update(value)
        elif key == "model" and isinstance(value, dict):
            out.update({f"model.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _setting_text(value: Any, present: bool) -> str:
    if not present:
        return "not recorded"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return "—" if value is None else str(value)


def _test_metrics(run: RunSummary) -> dict[str, Any]:
    """Full-protocol test metrics, whether stored per protocol or flat."""
    metrics = run.test_metrics.get("full", run.test_metrics) \
        if isinstance(run.test_metrics, dict) else {}
    return metrics if isinstance(metrics, dict) else {}


def _difference(a: float | None, b: float | None, comparable: bool) -> str:
    """b − a, and relative to a where a is not zero."""
    if a is None or b is None:
        return "—"
    if not comparable:
        return NOT_COMPARABLE
    text = f"{b - a:+.4f}"
    if a:
        text += f" ({(b - a) / a:+.1%})"
    return text


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def data_comparison(a: RunSummary, b: RunSummary) -> tuple[bool, CompareRow]:
    """Whether the runs' figures can be compared (same data fingerprint, or one not recorded),
    and the row that says so."""
    fa, fb = a.data_fingerprint, b.data_fingerprint
    shown_a, shown_b = (fa or "not recorded")[:12], (fb or "not recorded")[:12]
    if fa and fb:
        same = fa == fb
        verdict = "same data and split" if same else f"different data: {NOT_COMPARABLE}"
        return same, CompareRow("data", shown_a, shown_b, verdict)
    # Runs from before fingerprints were stored: nothing says they differ, so compare them.
    return True, CompareRow("data", shown_a, shown_b, "unknown (fingerprint not recorded)")


def _setting_rows(a: RunSummary, b: RunSummary) -> list[CompareRow]:
    """One row per setting that differs; one row saying all are the same, or that a run has
    none recorded (a run from before settings were stored: a row per setting would say
    nothing more)."""
    settings_a, settings_b = run_setting_values(a.config), run_setting_values(b.config)
    settings_a.pop("model_name", None)  # the "model" row
    settings_b.pop("model_name", None)
    missing = [f"#{r.id}" for r, s in ((a, settings_a), (b, settings_b)) if not s]
    if missing:
        return [CompareRow("settings", "not recorded" if not settings_a else "recorded",
                           "not recorded" if not settings_b else "recorded",
                           f"not recorded for run {' and '.join(missing)}")]
    differing = [k for k in dict.fromkeys([*settings_a, *settings_b])
                 if settings_a.get(k, _MISSING) != settings_b.get(k, _MISSING)]
    if not differing:
        return [CompareRow("settings", "", "", "all the same")]
    return [CompareRow(f"setting {k}", _setting_text(settings_a.get(k), k in settings_a),
                       _setting_text(settings_b.get(k), k in settings_b), "differs")
            for k in differing]


def compare_runs(a: RunSummary, b: RunSummary) -> list[CompareRow]:
    """Run `a` beside run `b`: the data row, the settings that differ (or one row saying they
    are all the same), best validation Recall@10 and the full-protocol test metrics, each with
    its difference b − a."""
    comparable, data_row = data_comparison(a, b)
    rows = [CompareRow("model", a.model, b.model, "same" if a.model == b.model else "differs"),
            data_row]
    rows.extend(_setting_rows(a, b))
    va, vb = _number(a.best_validation), _number(b.best_validation)
    rows.append(CompareRow("best validation recall@10", metric(va), metric(vb),
                           _difference(va, vb, comparable)))
    ta, tb = _test_metrics(a), _test_metrics(b)
    for name in COMPARED_METRICS:
        xa, xb = _number(ta.get(name)), _number(tb.get(name))
        rows.append(CompareRow(f"test {name} (full)", metric(xa), metric(xb),
                               _difference(xa, xb, comparable)))
    return rows
