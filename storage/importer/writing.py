"""Stage 4 of an import: the one write transaction, and `run_import`, which runs the stages.

Reading and row checks need no lock and run first. Then one `BEGIN IMMEDIATE` takes the
workspace's write lock BEFORE the "already imported" look-up and the duplicate-key read, so two
imports started together are serialised: the second waits (polling, so Ctrl-C still works) and
then finds the first one's sha256 or its keys. Nothing is visible until the final COMMIT; the
commit point is the last moment a cancel is honoured (exit 130, workspace unchanged); after it
the import completes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.errors import ImportCancelled, InputError, WorkspaceError
from storage.importer.checks import REASONS, Classified, check_rows
from storage.importer.duplicates import existing_keys, mark_duplicates
from storage.importer.entities import (
    Entities,
    assign_ids,
    group_time_order,
    write_items,
    write_users,
)
from storage.importer.reading import (
    check_columns,
    file_sha256,
    load_side_table,
    strip_control_characters,
    text_column,
)
from storage.importer.spec import ImportSpec, ImportSummary
from storage.sources import open_table, read_columns
from storage.timeparse import TimeParser
from storage.workspace import Workspace

ProgressFn = Callable[[int, int, str], None]  # (done, total, phase)
CancelFn = Callable[[], bool]
# Called once, right before COMMIT: True = commit (later cancels are ignored), False = cancel.
CommitPointFn = Callable[[], bool]

_CHUNK = 100_000
# A second writer waits this long for the write lock, polling so that a cancel is noticed.
LOCK_WAIT_SECONDS = 600.0
_LOCK_POLL_MS = 200
CANCELLED = "import cancelled; the workspace is unchanged"


def run_import(
    ws: Workspace,
    spec: ImportSpec,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
    commit_point: CommitPointFn | None = None,
) -> ImportSummary:
    """Import `spec.path` into `ws` atomically; see storage/importer/__init__.py for the rules."""
    started = time.perf_counter()
    report = progress or (lambda done, total, phase: None)
    cancelled = should_cancel or (lambda: False)
    table = open_table(spec.path, spec.fmt)
    cmap = spec.columns
    main_fields = {f: getattr(cmap, f) for f in ("user", "item", "time", "price", "quantity",
                                                   "value", "basket") if getattr(cmap, f)}
    check_columns(table, main_fields, "the mapped field")
    # Descriptive fields may come from the main file or from the items / users file.
    item_fields = {k: v for k, v in (("category", cmap.category), ("brand", cmap.brand)) if v}
    item_fields.update({f"title[{i}]": c for i, c in enumerate(cmap.title)})
    item_fields.update({f"item.{k}": v for k, v in cmap.item_attributes.items()})
    user_fields = {f"user.{k}": v for k, v in cmap.user_attributes.items()}
    item_side_fields = {k: v for k, v in item_fields.items() if v not in table.columns}
    user_side_fields = {k: v for k, v in user_fields.items() if v not in table.columns}
    if spec.items_path is None:
        check_columns(table, item_fields, "the mapped field")
    if spec.users_path is None:
        check_columns(table, user_fields, "the mapped field")

    digest = file_sha256(spec.hash_paths or (spec.path,))
    # A first look without the lock spares parsing a file imported long ago; the decisive look
    # is repeated under the lock below.
    earlier = _earlier_import(ws.conn, digest)
    if earlier is not None:
        return earlier
    try:
        parser = TimeParser(spec.time_format)
    except ValueError as exc:
        raise InputError(spec.path, str(exc)) from None

    report(0, 1, "reading")
    data, lines = read_columns(table)
    if data.num_rows == 0:
        raise InputError(spec.path, "no data rows after the header")
    data, cleaned = strip_control_characters(data)
    if cancelled():
        raise ImportCancelled(CANCELLED)
    report(0, 1, "checking rows")
    rows = check_rows(data, lines, table, spec, parser)
    candidates = np.flatnonzero(rows.reason == 0)
    needed_items = set(pc.unique(rows.item.take(pa.array(candidates))).to_pylist())
    items_side = users_side = None
    if spec.items_path is not None:
        items_side = load_side_table(spec.items_path, cmap.item, item_side_fields,
                                     "mapped field", needed_items)
    if spec.users_path is not None:
        users_side = load_side_table(spec.users_path, cmap.user, user_side_fields,
                                     "mapped field")

    with write_transaction(ws, report, cancelled) as conn:
        earlier = _earlier_import(conn, digest)
        if earlier is not None:  # a concurrent import of the same file committed first
            return earlier
        report(0, 1, "checking duplicates")
        mark_duplicates(rows, existing_keys(conn))
        kept = np.flatnonzero(rows.reason == 0)
        import_id = conn.execute(
            "INSERT INTO imports (file, sha256, preset, options, rows_read, rows_kept, "
            "imported_at) VALUES (?, ?, ?, ?, 0, 0, ?)",
            (
                str(Path(spec.path).resolve()),
                digest,
                spec.preset,
                json.dumps({
                    "map": cmap.as_dict(),
                    "time_format": spec.time_format,
                    "format": table.fmt,
                    "items": str(spec.items_path) if spec.items_path else None,
                    "users": str(spec.users_path) if spec.users_path else None,
                }),
                datetime.now(UTC).isoformat(timespec="seconds"),
            ),
        ).lastrowid
        picked = pa.array(kept)
        user_keys, item_keys = rows.user.take(picked), rows.item.take(picked)
        user_ids, new_users = assign_ids(conn, "users", user_keys)
        item_ids, new_items = assign_ids(conn, "items", item_keys)
        entities = Entities(rows, data, kept, user_keys, item_keys, user_ids, item_ids)
        unused = write_items(conn, entities, cmap, items_side, import_id)
        write_users(conn, entities, cmap, users_side, import_id)
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB page cache for the bulk write
        rebuild = _drop_indexes_for_bulk_load(conn, len(kept))
        _write_rows(conn, import_id, rows, data, lines, kept, user_ids, item_ids, report,
                    cancelled)
        for statement in rebuild:
            conn.execute(statement)
        counts = Counter(rows.reason.tolist())
        rejected = {REASONS[code]: n for code, n in sorted(counts.items()) if code}
        seconds = time.perf_counter() - started
        conn.execute(
            "UPDATE imports SET rows_read=?, rows_kept=?, rows_rejected=?, users_added=?, "
            "items_added=?, ts_min=?, ts_max=?, seconds=? WHERE id=?",
            (
                data.num_rows, len(kept), json.dumps(dict(sorted(rejected.items()))),
                len(new_users), len(new_items),
                int(rows.ts[kept].min()) if len(kept) else None,
                int(rows.ts[kept].max()) if len(kept) else None,
                round(seconds, 3), import_id,
            ),
        )
        # The commit point: the last cancel honoured. Only COMMIT follows it.
        if cancelled() or (commit_point is not None and not commit_point()):
            raise ImportCancelled(CANCELLED)
        report(1, 1, "committing")
    summary = import_summary(ws, import_id)
    summary.catalogue_items_unused = unused
    summary.cells_cleaned = cleaned
    return summary


def _earlier_import(conn: sqlite3.Connection, digest: str) -> ImportSummary | None:
    earlier = conn.execute(
        "SELECT id FROM imports WHERE sha256 = ? ORDER BY id LIMIT 1", (digest,)
    ).fetchone()
    if earlier is None:
        return None
    summary = _summary(conn, earlier[0])
    summary.already_imported = True
    return summary


@contextmanager
def write_transaction(
    ws: Workspace, report: ProgressFn, cancelled: CancelFn
) -> Iterator[sqlite3.Connection]:
    """`ws.transaction()` entered as soon as no other connection holds the write lock.

    SQLite's busy handler sleeps inside C, where Ctrl-C is not seen; so the wait is made of
    short busy timeouts with a cancel check between them. After LOCK_WAIT_SECONDS the import
    is refused with one line rather than left waiting."""
    conn = ws.conn
    previous = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    with ExitStack() as stack:
        conn.execute(f"PRAGMA busy_timeout = {_LOCK_POLL_MS}")
        try:
            while True:
                try:
                    stack.enter_context(ws.transaction(check_foreign_keys=False))
                    break
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc):
                        raise
                if cancelled():
                    raise ImportCancelled(CANCELLED)
                if time.monotonic() > deadline:
                    raise WorkspaceError(
                        f"{ws.path}: another process has been writing to this workspace for "
                        f"{LOCK_WAIT_SECONDS:.0f} s; try the import again when it has finished"
                    )
                report(0, 1, "waiting for another write to finish")
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(previous)}")
        yield conn


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY / SQLITE_LOCKED: another connection holds the lock (the code, else words)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (5, 6)
    return "locked" in str(exc) or "busy" in str(exc)


def _drop_indexes_for_bulk_load(conn: sqlite3.Connection, adding: int) -> list[str]:
    """When an import at least doubles the interactions, building their indexes once afterwards
    is cheaper than updating them row by row: drop them now (inside the transaction, so a
    rollback restores them) and return the statements that rebuild them."""
    existing = conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
    if adding < max(existing, 10_000):
        return []
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'interactions' "
        "AND sql IS NOT NULL"
    ).fetchall()
    for name, _sql in indexes:
        conn.execute(f"DROP INDEX [{name}]")
    return [sql for _name, sql in indexes]


def _nullable(values: np.ndarray) -> list:
    """numpy floats -> list with None for NaN (SQL NULL)."""
    out = values.tolist()
    if np.isnan(values).any():
        out = [None if v != v else v for v in out]
    return out


def _write_rows(conn: sqlite3.Connection, import_id: int, rows: Classified, data: pa.Table,
                lines: np.ndarray, kept: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray,
                report: ProgressFn, cancelled: CancelFn) -> None:
    """Insert kept interactions and rejects in chunks, reporting progress and honouring cancel."""
    rejected = np.flatnonzero(rows.reason != 0)
    total = len(kept) + len(rejected)
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if cancelled():
            raise ImportCancelled(CANCELLED)
        report(done, total, "writing")

    # Rows are stored in the order of the (user_id, ts) index: a user's timeline is then a few
    # adjacent pages, and index updates (or the rebuild) touch pages in order.
    order = group_time_order(user_ids, rows.ts[kept])
    kept, user_ids, item_ids = kept[order], user_ids[order], item_ids[order]
    basket = rows.basket
    for start in range(0, len(kept), _CHUNK):
        part = kept[start : start + _CHUNK]
        n = len(part)
        conn.executemany(
            "INSERT INTO interactions (user_id, item_id, ts, quantity, price, value, basket, "
            f"import_id, line) VALUES (?, ?, ?, ?, ?, ?, ?, {int(import_id)}, ?)",
            zip(
                user_ids[start : start + n].tolist(),
                item_ids[start : start + n].tolist(),
                rows.ts[part].tolist(),
                _nullable(rows.quantity[part]),
                _nullable(rows.price[part]),
                _nullable(rows.value[part]),
                basket.take(pa.array(part)).to_pylist() if basket is not None else [None] * n,
                lines[part].tolist(),
                strict=True,
            ),
        )
        step(n)
    if len(rejected):
        codes = rows.reason[rejected]
        reject_lines = lines[rejected]
        # Runs of consecutive lines that share a reason are stored as one row (first, last).
        starts = np.flatnonzero(np.r_[True, (np.diff(reject_lines) != 1)
                                      | (codes[1:] != codes[:-1])])
        ends = np.r_[starts[1:], len(rejected)] - 1
        picked = pa.array(rejected[starts])
        raw = pc.binary_join_element_wise(
            *[text_column(data.column(c).take(picked)) for c in data.column_names], ","
        ).to_pylist()
        conn.executemany(
            "INSERT INTO rejects (import_id, reason, line, last_line, raw) "
            f"VALUES ({int(import_id)}, ?, ?, ?, ?)",
            zip([REASONS[c] for c in codes[starts].tolist()], reject_lines[starts].tolist(),
                reject_lines[ends].tolist(), raw, strict=True),
        )
        step(len(rejected))


def import_summary(ws: Workspace, import_id: int) -> ImportSummary:
    """The stored summary of import `import_id`, with the workspace's current totals."""
    return _summary(ws.conn, import_id)


def _summary(conn: sqlite3.Connection, import_id: int) -> ImportSummary:
    row = conn.execute(
        "SELECT id, file, preset, sha256, rows_read, rows_kept, rows_rejected, users_added, "
        "items_added, ts_min, ts_max, seconds FROM imports WHERE id = ?",
        (import_id,),
    ).fetchone()
    users_total = conn.execute("SELECT count(*) FROM users").fetchone()[0]
    items_total = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    return ImportSummary(
        import_id=row[0],
        file=row[1],
        preset=row[2],
        sha256=row[3],
        rows_read=row[4],
        rows_kept=row[5],
        rows_rejected=json.loads(row[6] or "{}"),
        users_added=row[7] or 0,
        items_added=row[8] or 0,
        users_total=users_total,
        items_total=items_total,
        ts_min=row[9],
        ts_max=row[10],
        seconds=row[11] or 0.0,
    )
