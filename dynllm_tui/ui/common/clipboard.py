"""What the copy key puts on the clipboard: the list on screen as TSV (tab-separated, one header
line), which pastes into a spreadsheet as columns. Plain functions, no Textual: the same text can
be made headless (`rows_tsv`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

RECOMMENDATION_COLUMNS = ("rank", "item", "title", "score", "bought_before", "reason")


def _cell(value: Any) -> str:
    """One TSV cell: tabs and line breaks inside a value would split it, so they become
    spaces; None is empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return " ".join(text.replace("\t", " ").splitlines()) if any(
        c in text for c in "\t\r\n") else text


def rows_tsv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """`header` and `rows` as TSV text, one line each, ending with a newline."""
    lines = ["\t".join(header)]
    lines += ["\t".join(_cell(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def runs_tsv(runs: Iterable[Any], headline: Sequence[str]) -> str:
    """`storage.browse.RunSummary` rows as TSV: what the Runs table shows, with the metrics
    unrounded and the active run marked in its own column."""
    return rows_tsv(("run", "active", "status", "finished", "epochs", "device", *headline), (
        (r.id, "yes" if r.active else "no", r.status, r.finished_at, r.epochs_done, r.device,
         *(r.headline.get(m) for m in headline))
        for r in runs))


def recommendations_tsv(rows: Iterable[Any]) -> str:
    """A list of `storage.browse.Recommendation` as TSV (RECOMMENDATION_COLUMNS)."""
    return rows_tsv(RECOMMENDATION_COLUMNS, (
        (r.rank, r.item_key, r.title, r.score, "yes" if r.bought_before else "no", r.reason)
        for r in rows))
