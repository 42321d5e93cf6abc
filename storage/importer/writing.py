"""Stage 4 of an import: the one write transaction, and `run_import`, which runs the stages.

The file is read in chunks (ChunkReader) and every chunk is checked, de-duplicated and staged
INSIDE one `BEGIN IMMEDIATE` transaction, so memory stays bounded by the chunk size plus
O(unique keys, users, items) state and a failure in any chunk leaves nothing. The write lock is
taken BEFORE the "already imported" look-up and the duplicate-key read, so two imports started
together are serialised: the second waits (polling, so Ctrl-C still works) and then finds the
first one's sha256 or its keys. Nothing is visible until the final COMMIT; the commit point is
the last moment a cancel is honoured (exit 130, workspace unchanged); after it the import
completes."""

from __future__ import annotations

import ctypes
import ctypes.util
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
from storage.importer.duplicates import SeenKeys, key_hashes, mark_duplicates, seed_existing
from storage.importer.entities import IdMap, LatestRows, write_items, write_users
from storage.importer.reading import (
    ChunkReader,
    LinesNotSimple,
    RecordTooLong,
    SideTable,
    check_columns,
    file_sha256,
    load_side_table,
    strip_control_characters,
    text_column,
)
from storage.importer.spec import ImportSpec, ImportSummary
from storage.sources import Table, open_table
from storage.timeparse import TimeParser
from storage.user_stats import refresh_user_stats
from storage.workspace import Workspace

ProgressFn = Callable[[int, int, str], None]  # (done, total, phase)
CancelFn = Callable[[], bool]
# Called once, right before COMMIT: True = commit (later cancels are ignored), False = cancel.
CommitPointFn = Callable[[], bool]

# Rows per chunk: the import holds one chunk's columns at a time (~60 MB for Online Retail at
# 100k rows) plus O(unique keys) state, whatever the file's size. Tests pass tiny ones.
CHUNK_ROWS = 100_000
_ROWS_PER_INSERT = 16_384
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
    chunk_rows: int | None = None,
) -> ImportSummary:
    """Import `spec.path` into `ws` atomically; see storage/importer/__init__.py for the rules.

    The file is read, checked and staged `chunk_rows` rows at a time inside one transaction, so
    memory stays bounded while the outcome (tables, ids, report) is the same for any chunk
    size; a failure or cancel in any chunk rolls everything back."""
    started = time.perf_counter()
    report = progress or (lambda done, total, phase: None)
    cancelled = should_cancel or (lambda: False)
    _fixed_mmap_threshold()
    # Arrow's default allocator (mimalloc) keeps what a chunk freed for later use by the same
    # thread, so its resident size grew with the number of chunks; the system allocator gives
    # it back. Restored afterwards: buffers remember the pool that made them.
    previous_pool = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        return _run_import(ws, spec, started, report, cancelled, commit_point, chunk_rows)
    finally:
        pa.set_memory_pool(previous_pool)


def _run_import(ws: Workspace, spec: ImportSpec, started: float, report: ProgressFn,
                cancelled: CancelFn, commit_point: CommitPointFn | None,
                chunk_rows: int | None) -> ImportSummary:
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
    # The side files are catalogues (one row per item / user): read whole, before the lock.
    items_side = users_side = None
    if spec.items_path is not None:
        items_side = load_side_table(spec.items_path, cmap.item, item_side_fields,
                                     "mapped field")
    if spec.users_path is not None:
        users_side = load_side_table(spec.users_path, cmap.user, user_side_fields,
                                     "mapped field")

    report(0, 1, "reading")
    exact_lines = big_blocks = False
    while True:
        reader = ChunkReader(table, chunk_rows or CHUNK_ROWS, exact_lines=exact_lines,
                             big_blocks=big_blocks)
        try:
            with write_transaction(ws, report, cancelled) as conn:
                earlier = _earlier_import(conn, digest)
                if earlier is not None:  # a concurrent import of the same file committed first
                    return earlier
                import_id, unused, cleaned = _import_in_chunks(
                    conn, spec, table, reader, parser, digest, items_side, users_side,
                    report, cancelled, started)
                # The commit point: the last cancel honoured. Only COMMIT follows it.
                if cancelled() or (commit_point is not None and not commit_point()):
                    raise ImportCancelled(CANCELLED)
                report(1, 1, "committing")
            break
        except LinesNotSimple:
            exact_lines = True  # rows span lines: a second pass numbers them by the row reader
        except RecordTooLong:
            big_blocks = True
        except InputError as exc:
            # A bad cell named by a line number that assumed one row per line: name it again
            # with exact lines (the second pass raises the same error at its true line).
            if reader.exact_lines or exc.line is None:
                raise
            exact_lines = True
    summary = import_summary(ws, import_id)
    summary.catalogue_items_unused = unused
    summary.cells_cleaned = cleaned
    return summary


def _import_in_chunks(
    conn: sqlite3.Connection, spec: ImportSpec, table: Table, reader: ChunkReader,
    parser: TimeParser, digest: str, items_side: SideTable | None,
    users_side: SideTable | None, report: ProgressFn, cancelled: CancelFn, started: float,
) -> tuple[int, int, int]:
    """Every stage, chunk by chunk, inside the caller's transaction; returns (import id, unused
    catalogue items, cleaned cells). Kept rows go to a TEMP staging table first and reach
    `interactions` in one ordered INSERT at the end, so the stored order (and the ids) are the
    one-shot import's: by (user, time, line)."""
    cmap = spec.columns
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
    # A 64 MiB page cache for the bulk write (it also bounds SQLite's in-memory sorts for the
    # ordered insert and the index rebuild; beyond it they spill to temporary files) and 8 MiB
    # for the staging table, which is written once in order and read once in order.
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA temp.cache_size = -8192")
    conn.execute(
        "CREATE TEMP TABLE import_staging (n INTEGER PRIMARY KEY, user_id INTEGER, "
        "item_id INTEGER, ts INTEGER, quantity REAL, price REAL, value REAL, basket TEXT, "
        "line INTEGER)"
    )
    seen = SeenKeys()
    seed_existing(conn, seen, reader.chunk_rows)
    users, items = IdMap(conn, "users"), IdMap(conn, "items")
    in_main = set(table.columns)
    user_rows = LatestRows([c for c in cmap.user_attributes.values() if c in in_main])
    item_rows = LatestRows([cmap.category, cmap.brand, *cmap.item_attributes.values()])
    runs = RejectRuns(conn, import_id)
    counts: Counter[int] = Counter()
    rows_read = kept_total = cleaned = 0
    ts_min: int | None = None
    ts_max: int | None = None
    for data, lines in reader:
        data, cleaned_here = strip_control_characters(data)
        cleaned += cleaned_here
        rows = check_rows(data, lines, table, spec, parser)
        mark_duplicates(rows, seen, conn, users.ids, items.ids)
        kept = np.flatnonzero(rows.reason == 0)
        picked = pa.array(kept)
        user_keys, item_keys = rows.user.take(picked), rows.item.take(picked)
        user_ids, item_ids = users.assign(user_keys), items.assign(item_keys)
        user_rows.update(rows, data, kept, user_ids, user_keys)
        item_rows.update(rows, data, kept, item_ids, item_keys, with_titles=True)
        if len(kept):
            seen.add(key_hashes(user_keys, item_keys, rows.ts[kept], rows.quantity[kept],
                                rows.price[kept],
                                rows.basket.take(picked) if rows.basket is not None else None),
                     np.arange(kept_total, kept_total + len(kept), dtype=np.int64))
            _stage_rows(conn, rows, kept, lines, user_ids, item_ids, kept_total)
            low, high = int(rows.ts[kept].min()), int(rows.ts[kept].max())
            ts_min = low if ts_min is None else min(ts_min, low)
            ts_max = high if ts_max is None else max(ts_max, high)
        runs.add(rows, data, lines)
        counts.update(rows.reason.tolist())
        rows_read += data.num_rows
        kept_total += len(kept)
        if cancelled():
            raise ImportCancelled(CANCELLED)
        report(reader.done, reader.total, "writing")
    if rows_read == 0:
        raise InputError(spec.path, "no data rows after the header")
    runs.flush()
    report(reader.done, reader.total, "users and items")
    unused = write_items(conn, item_rows, cmap, in_main, items_side, import_id)
    write_users(conn, user_rows, cmap, in_main, users_side, import_id)
    del seen, user_rows, item_rows
    rebuild = _drop_indexes_for_bulk_load(conn, kept_total)
    report(reader.done, reader.total, "storing in timeline order")
    # Stored in the order of the (user_id, ts) index: a user's timeline is then a few adjacent
    # pages, and index updates (or the rebuild) touch pages in order. SQLite sorts on disk.
    conn.execute(
        "INSERT INTO interactions (user_id, item_id, ts, quantity, price, value, basket, "
        "import_id, line) SELECT user_id, item_id, ts, quantity, price, value, basket, ?, line "
        "FROM temp.import_staging ORDER BY user_id, ts, n", (import_id,),
    )
    conn.execute("DROP TABLE temp.import_staging")
    if cancelled():
        raise ImportCancelled(CANCELLED)
    report(reader.done, reader.total, "indexing")
    for statement in rebuild:
        conn.execute(statement)
    report(reader.done, reader.total, "user statistics")
    rejected = {REASONS[code]: n for code, n in sorted(counts.items()) if code}
    conn.execute(
        "UPDATE imports SET rows_read=?, rows_kept=?, rows_rejected=?, users_added=?, "
        "items_added=?, ts_min=?, ts_max=?, seconds=? WHERE id=?",
        (
            rows_read, kept_total, json.dumps(dict(sorted(rejected.items()))),
            len(users.new), len(items.new), ts_min, ts_max,
            round(time.perf_counter() - started, 3), import_id,
        ),
    )
    # The persisted per-user statistics follow the new rows in the same transaction (v6).
    refresh_user_stats(conn)
    return import_id, unused, cleaned


def _fixed_mmap_threshold() -> None:
    """glibc raises its mmap threshold each time a big block is freed, after which big blocks
    (a chunk's numpy columns) come from the heap, which then only grows: measured, +110 MB
    over the chunks of a 4x Online Retail import. A fixed threshold (128 KiB, glibc's
    default) keeps big blocks mapped and returned when freed. No-op where it is not glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


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


def _stage_rows(conn: sqlite3.Connection, rows: Classified, kept: np.ndarray,
                lines: np.ndarray, user_ids: np.ndarray, item_ids: np.ndarray,
                first: int) -> None:
    """This chunk's kept rows into the staging table, numbered from `first` in file order.
    Converted to Python values 16k rows at a time: fewer short-lived objects at once keeps the
    interpreter's heap from growing between chunks."""
    basket = rows.basket
    for start in range(0, len(kept), _ROWS_PER_INSERT):
        part = kept[start:start + _ROWS_PER_INSERT]
        n = len(part)
        conn.executemany(
            "INSERT INTO temp.import_staging (n, user_id, item_id, ts, quantity, price, value, "
            "basket, line) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            zip(
                range(first + start, first + start + n),
                user_ids[start:start + n].tolist(),
                item_ids[start:start + n].tolist(),
                rows.ts[part].tolist(),
                _nullable(rows.quantity[part]),
                _nullable(rows.price[part]),
                _nullable(rows.value[part]),
                basket.take(pa.array(part)).to_pylist() if basket is not None else [None] * n,
                lines[part].tolist(),
                strict=True,
            ),
        )


class RejectRuns:
    """Rejected rows written as runs of consecutive lines that share a reason (first line, last
    line, the first line's text). A run may cross a chunk boundary, so the last run of a chunk
    stays open until the next chunk shows whether it goes on."""

    def __init__(self, conn: sqlite3.Connection, import_id: int) -> None:
        self.conn = conn
        self.import_id = int(import_id)
        self.open: list | None = None  # [reason code, first line, last line, raw]

    def add(self, rows: Classified, data: pa.Table, lines: np.ndarray) -> None:
        rejected = np.flatnonzero(rows.reason != 0)
        if not len(rejected):
            return
        codes = rows.reason[rejected]
        reject_lines = lines[rejected]
        starts = np.flatnonzero(np.r_[True, (np.diff(reject_lines) != 1)
                                      | (codes[1:] != codes[:-1])])
        ends = np.r_[starts[1:], len(rejected)] - 1
        picked = pa.array(rejected[starts])
        raw = pc.binary_join_element_wise(
            *[text_column(data.column(c).take(picked)) for c in data.column_names], ","
        ).to_pylist()
        found = [[code, first, last, text] for code, first, last, text in zip(
            codes[starts].tolist(), reject_lines[starts].tolist(), reject_lines[ends].tolist(),
            raw, strict=True)]
        if self.open is not None:
            if found[0][0] == self.open[0] and found[0][1] == self.open[2] + 1:
                self.open[2] = found[0][2]  # the open run goes on into this chunk
                found = found[1:]
            if found:
                found.insert(0, self.open)
        if found:
            self.open = found.pop()
            self._write(found)

    def flush(self) -> None:
        if self.open is not None:
            self._write([self.open])
            self.open = None

    def _write(self, runs: list[list]) -> None:
        self.conn.executemany(
            "INSERT INTO rejects (import_id, reason, line, last_line, raw) "
            f"VALUES ({self.import_id}, ?, ?, ?, ?)",
            [(REASONS[code], first, last, raw) for code, first, last, raw in runs],
        )


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
