"""Segments: the table of crowd segments, one segment's detail, and a segment's
recommendations as CSV. What `dynllm-tui segments [NAME]` and `export recommendations
--segment NAME` call, and what the Segments screen's keys do (the screen reads through its
shared connection; these open their own, read-only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from storage.browse import SegmentDetail, SegmentsPage, segment_detail, segments_page
from storage.workspace import Workspace

NO_PROFILES = ("no customer has a profile yet, so there are no segments: make profiles with "
               "`dynllm-tui profiles` (or build the demo with `dynllm-tui demo`)")


def segments_table(db: str | Path | None, *, limit: int = 50, offset: int = 0, search: str = "",
                   run_id: int | None = None) -> SegmentsPage:
    """One page of segments (most users first)."""
    with Workspace.open(db, readonly=True) as ws:
        return segments_page(ws, run_id=run_id, offset=offset, limit=limit, search=search)


def segment_info(db: str | Path | None, segment: str, *, run_id: int | None = None,
                 top: int = 10) -> SegmentDetail:
    """One segment: its figures and the items most recommended to its users."""
    with Workspace.open(db, readonly=True) as ws:
        return segment_detail(ws, segment, run_id=run_id, top=top)


def export_segment(db: str | Path | None, segment: str, out: str | Path, *, k: int = 10,
                   run_id: int | None = None, list_name: str = "all", reasons: bool = False,
                   progress: Callable[[int, int, str], None] | None = None) -> int:
    """The segment's users' recommendations as CSV (the recommendations export, filtered)."""
    from dynllm_tui.jobs.export import export_job

    return export_job(db, "recommendations", out, k=k, run_id=run_id, progress=progress,
                      list_name=list_name, reasons=reasons, segment=segment)


def default_export_name(segment: str) -> str:
    """A file name for a segment's export: its name in lower case, letters and digits only."""
    slug = "".join(c if c.isalnum() else "-" for c in segment.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"recommendations-{slug or 'segment'}.csv"


def _weight(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _customers(n: int) -> str:
    return f"{n:,} customer{'s' if n != 1 else ''}"


def segments_text(page: SegmentsPage) -> list[str]:
    """The table as printed by `dynllm-tui segments`."""
    if page.users == 0:
        return ["no customers yet: import a file first (`dynllm-tui import FILE`)"]
    if page.total == 0 and page.unsegmented == page.users:
        return [NO_PROFILES]
    facets = page.facets
    head = f"{'segment':<40} {'users':>7} {'share':>6} {'repeat':>6}" + "".join(
        f" {f[:10]:>10}" for f in facets)
    lines = [head]
    for row in page.rows:
        lines.append(f"{row.segment[:40]:<40} {row.users:>7,} {_percent(row.share):>6} "
                     f"{_percent(row.repeat_share):>6}"
                     + "".join(f" {_weight(row.facet_weights.get(f)):>10}" for f in facets))
    shown = f"{len(page.rows)} of {page.total:,} segments"
    run = f"facet weights of run #{page.run_id}" if page.run_id is not None else \
        "no finished run: no facet weights"
    lines.append(f"{shown} · {page.unsegmented:,} of {page.users:,} customers have no profile "
                 f"(in no segment) · {run}")
    return lines


def segment_detail_text(detail: SegmentDetail) -> list[str]:
    """One segment as printed by `dynllm-tui segments NAME`."""
    row = detail.row
    lines = [
        f"segment {row.segment!r}: {_customers(row.users)} "
        f"({_percent(row.share)} of {detail.users_total:,}), {row.events:,} purchase lines, "
        f"repeat share {_percent(row.repeat_share)}",
    ]
    if row.users == 1:
        lines.append("note: one customer only, so every figure is that customer's own")
    if detail.facets:
        lines.append("mean facet weights at the latest event (run #{}): {}".format(
            detail.run_id, ", ".join(f"{f} {_weight(row.facet_weights.get(f))}"
                                     for f in detail.facets)))
    if detail.note:
        lines.append(f"note: {detail.note}")
    for name, items in detail.items.items():
        lines.append(f"most recommended — {name} (customers who get it in their top 10, of "
                     f"{detail.users_with_recommendations:,} with recommendations):")
        if not items:
            lines.append("  (none)")
        for n, item in enumerate(items, start=1):
            lines.append(f"  {n:>2}. {item.item_key:<10} {(item.title or '')[:48]:<48} "
                         f"{_customers(item.users):>13}, mean rank {item.mean_rank:.1f}")
    return lines
