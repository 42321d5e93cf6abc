"""Importing an interaction log into the workspace, with every input row accounted for.

An import runs in four stages, one module each, over the file in chunks (100k rows by default):
  reading.py     the file as chunks of Arrow columns (ChunkReader), control characters
                 stripped, cells as ids / text / numbers / times; the spec and summary in spec.py
  checks.py      every row kept or rejected with a reason and its line (vectorised)
  duplicates.py  rows whose key this file or an earlier import already holds (SeenKeys: a hash
                 per kept key, confirmed column by column; O(unique keys), 16 bytes each)
  writing.py     one `BEGIN IMMEDIATE` transaction around all the chunks (users and items in
                 entities.py, latest row per id kept across chunks) that commits only at the
                 end, and `run_import`, which runs the stages

Memory is one chunk plus O(unique keys + users + items) state plus SQLite's 64 MiB page cache,
whatever the file's size; the tables and the report are the same for every chunk size.

A bad cell, a cancel before the commit point or a crash rolls everything back, so the workspace
stays exactly as it was. Re-importing a file with the same content hash adds nothing, also when
two imports of it run at once: the look-up happens under the write lock.

Rejection reasons are checked in this order; a row gets the first that applies:
  cancellation, missing_user, missing_item, non_product_item, non_finite_quantity,
  non_positive_quantity, non_finite_price, non_positive_price (or negative_price),
  non_finite_value, missing_time, duplicate.
"""

from storage.importer.checks import REASONS
from storage.importer.reading import file_sha256
from storage.importer.spec import (
    MAP_FIELDS,
    REQUIRED_FIELDS,
    ColumnMap,
    ImportSpec,
    ImportSummary,
    RejectRules,
)
from storage.importer.writing import CancelFn, CommitPointFn, ProgressFn, import_summary, run_import

__all__ = [
    "MAP_FIELDS",
    "REASONS",
    "REQUIRED_FIELDS",
    "CancelFn",
    "ColumnMap",
    "CommitPointFn",
    "ImportSpec",
    "ImportSummary",
    "ProgressFn",
    "RejectRules",
    "file_sha256",
    "import_summary",
    "run_import",
]
