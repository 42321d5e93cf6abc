"""Stage 3 of an import: duplicate keys, against this file and every earlier import.

A row is a duplicate when an earlier row of the file, or an interaction already stored, has the
same user, item, time, quantity, unit price and basket, compared in the form they are stored in
(a missing quantity is 1, a missing price is value / quantity). The first occurrence is kept.
`mark_duplicates` must run inside the import's write transaction: keys read before the lock
could miss rows that a concurrent import is committing (which doubled data, issue 10 #1).
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.importer.checks import CODE, Classified

KEY_NAMES = ("user", "item", "ts", "quantity", "price", "basket")


def existing_keys(conn: sqlite3.Connection) -> pa.Table | None:
    """Keys of the interactions already in the workspace, to reject re-imported rows."""
    if not conn.execute("SELECT 1 FROM interactions LIMIT 1").fetchone():
        return None
    rows = conn.execute(
        "SELECT u.external_id, i.external_id, x.ts, x.quantity, x.price, x.basket "
        "FROM interactions x JOIN users u ON u.id = x.user_id JOIN items i ON i.id = x.item_id"
    ).fetchall()
    types = [pa.string(), pa.string(), pa.int64(), pa.float64(), pa.float64(), pa.string()]
    return pa.table({name: pa.array([r[i] for r in rows], type) for i, (name, type)
                     in enumerate(zip(KEY_NAMES, types, strict=True))})


def mark_duplicates(rows: Classified, existing: pa.Table | None) -> None:
    """Set the `duplicate` reason on rows still kept whose key was seen before."""
    candidates = np.flatnonzero(rows.reason == 0)
    if not len(candidates):
        return
    n = len(rows.reason)
    n_old = existing.num_rows if existing is not None else 0
    no_basket = pa.chunked_array([pa.nulls(n, pa.string())])

    def key(name: str, column: pa.ChunkedArray | np.ndarray):
        """This import's candidates, after the earlier imports' keys when there are any."""
        if isinstance(column, np.ndarray):
            mine = column[candidates]
            if existing is None:
                return mine
            old = existing.column(name).to_numpy(zero_copy_only=False).astype(mine.dtype)
            return np.concatenate([old, mine])
        if existing is None:
            # Integer codes of the whole column, then gathered: cheaper than gathering strings.
            encoded = pc.dictionary_encode(pc.fill_null(column, "")).combine_chunks()
            return encoded.indices.to_numpy()[candidates]
        mine = column.take(pa.array(candidates))
        return pa.chunked_array(existing.column(name).chunks + mine.chunks, pa.string())

    basket = rows.basket if rows.basket is not None else no_basket
    duplicate = duplicate_rows(
        [key("user", rows.user), key("item", rows.item), key("ts", rows.ts),
         key("quantity", rows.quantity), key("price", rows.price), key("basket", basket)],
    )[n_old:]
    rows.reason[candidates[duplicate]] = CODE["duplicate"]


def duplicate_rows(keys: list[pa.ChunkedArray | np.ndarray]) -> np.ndarray:
    """Bool per row: True where an earlier row has the same key in every column.

    Text columns are dictionary-encoded, each row's codes are folded into one 64-bit hash, and
    rows are stable-sorted by hash; only rows whose hash repeats are compared column by column,
    so a hash collision can never drop a row."""
    columns = []
    for key in keys:
        if isinstance(key, np.ndarray) and key.dtype.kind == "f":
            # Compare bit patterns; every missing number (NaN) folds to the same pattern.
            folded = np.where(np.isnan(key), np.nan, key).astype(np.float64)
            columns.append(folded.view(np.uint64))
        elif isinstance(key, np.ndarray):
            columns.append(key.astype(np.int64).view(np.uint64))
        else:
            encoded = pc.dictionary_encode(pc.fill_null(key, "")).combine_chunks()
            columns.append(encoded.indices.to_numpy().astype(np.uint64))
    digest = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            digest = (digest ^ column) * np.uint64(0x100000001B3)  # FNV-style mixing
            digest ^= digest >> np.uint64(29)
    order = np.argsort(digest, kind="stable")
    ranked = digest[order]
    repeats = np.flatnonzero(ranked[1:] == ranked[:-1]) + 1
    duplicate = np.zeros(len(digest), dtype=bool)
    if not len(repeats):
        return duplicate
    seen: dict[int, set[tuple]] = {}
    # Each run of equal hashes starts one place before its first repeat.
    for position in np.union1d(repeats - 1, repeats):
        row = int(order[position])
        exact = tuple(int(column[row]) for column in columns)
        bucket = seen.setdefault(int(ranked[position]), set())
        if exact in bucket:
            duplicate[row] = True
        else:
            bucket.add(exact)
    return duplicate
