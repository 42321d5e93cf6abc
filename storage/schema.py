"""Workspace schema as forward migrations, created with sqlite-utils.

`MIGRATIONS[n]` brings a workspace from version n to n + 1. Never edit a released migration:
append a new one, so that every older workspace walks the same path forward.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

# "DYNL" as a big-endian int: lets us tell our workspaces from other SQLite files.
APPLICATION_ID = 0x44594E4C


def _v1_foundation(db: sqlite_utils.Database) -> None:
    db["imports"].create(
        {
            "id": int,
            "file": str,  # path as given, resolved
            "sha256": str,  # content hash of the main data file (folder: of its tables)
            "preset": str,
            "options": str,  # JSON: column mapping, time format, extra files
            "rows_read": int,
            "rows_kept": int,
            "rows_rejected": str,  # JSON object reason -> count
            "users_added": int,
            "items_added": int,
            "ts_min": int,
            "ts_max": int,
            "imported_at": str,  # ISO 8601 UTC
            "seconds": float,
        },
        pk="id",
        not_null={"file", "sha256", "preset", "rows_read", "rows_kept"},
    )
    db["imports"].create_index(["sha256"])
    # Rejected rows as runs of consecutive lines with one reason (lines `line`..`last_line`):
    # every input line is accounted for at a fifteenth of the rows, since rejects come in blocks
    # (a whole invoice without a customer). `raw` is the first line of the run as it read.
    db["rejects"].create(
        {"import_id": int, "reason": str, "line": int, "last_line": int, "raw": str},
        foreign_keys=[("import_id", "imports", "id")],
        not_null={"import_id", "line", "last_line", "reason"},
    )
    db["rejects"].create_index(["import_id", "reason"])
    db["users"].create(
        {"id": int, "external_id": str, "attributes": str, "import_id": int},
        pk="id",
        not_null={"external_id"},
        foreign_keys=[("import_id", "imports", "id")],
    )
    db["users"].create_index(["external_id"], unique=True)
    db["items"].create(
        {
            "id": int,
            "external_id": str,
            "title": str,
            "category": str,
            "brand": str,
            "price": float,
            "text": str,  # what the text encoder embeds: title + category + brand
            "attributes": str,
            "title_ts": int,  # time of the row the title came from (latest wins)
            "import_id": int,
        },
        pk="id",
        not_null={"external_id"},
        foreign_keys=[("import_id", "imports", "id")],
    )
    db["items"].create_index(["external_id"], unique=True)
    db["interactions"].create(
        {
            "id": int,
            "user_id": int,
            "item_id": int,
            "ts": int,  # Unix seconds, UTC (naive input times are taken as UTC)
            "quantity": float,
            "price": float,  # unit price
            "value": float,  # quantity x unit price, or the file's own sales value
            "basket": str,  # invoice / basket id: one basket = one timestamp
            "import_id": int,
            "line": int,  # line (CSV, JSON lines) or row (Parquet) in the source file
        },
        pk="id",
        not_null={"user_id", "item_id", "ts", "import_id"},
        foreign_keys=[
            ("user_id", "users", "id"),
            ("item_id", "items", "id"),
            ("import_id", "imports", "id"),
        ],
    )
    # One index: a user's timeline. Training reads the whole log and sorts it in numpy, so an
    # index on ts or item_id would only slow every import down.
    db["interactions"].create_index(["user_id", "ts"])


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1_foundation]
SCHEMA_VERSION = len(MIGRATIONS)
