"""How `dynllm-tui` prints an import's summary (after `import`, and the demo's import phase):
a table for people, a JSON object for scripts."""

from __future__ import annotations

from typing import Any


def import_summary_json(summary: Any) -> dict[str, Any]:
    """The summary of `storage.importer.run_import` as JSON-ready data."""
    from storage.timeparse import iso_utc

    return {
        "import_id": summary.import_id,
        "file": summary.file,
        "preset": summary.preset,
        "sha256": summary.sha256,
        "already_imported": summary.already_imported,
        "rows_read": summary.rows_read,
        "rows_kept": summary.rows_kept,
        "rows_rejected": summary.rows_rejected,
        "users_added": summary.users_added,
        "items_added": summary.items_added,
        "users_total": summary.users_total,
        "items_total": summary.items_total,
        "time_min": iso_utc(summary.ts_min),
        "time_max": iso_utc(summary.ts_max),
        "seconds": summary.seconds,
    }


def print_import_summary(summary: Any) -> None:
    """The summary as a table: rows read, kept, rejected by reason, users, items, span."""
    from rich.console import Console
    from rich.table import Table

    from storage.timeparse import iso_utc

    console = Console()
    if summary.already_imported:
        print(f"Already imported as import #{summary.import_id} (same content, sha256 "
              f"{summary.sha256[:12]}): nothing added.")
    table = Table(title=f"Import #{summary.import_id}: {summary.file}", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("rows read", f"{summary.rows_read:,}")
    table.add_row("rows kept (interactions)", f"{summary.rows_kept:,}")
    table.add_row("rows rejected", f"{summary.rejected_total:,}")
    for reason, count in sorted(summary.rows_rejected.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  {reason}", f"{count:,}")
    table.add_row("users (added / total)", f"{summary.users_added:,} / {summary.users_total:,}")
    table.add_row("items (added / total)", f"{summary.items_added:,} / {summary.items_total:,}")
    if summary.catalogue_items_unused:
        table.add_row("catalogue items never bought (not imported)",
                      f"{summary.catalogue_items_unused:,}")
    table.add_row("time span", f"{iso_utc(summary.ts_min)} .. {iso_utc(summary.ts_max)}")
    table.add_row("seconds", f"{summary.seconds:.2f}")
    console.print(table)
