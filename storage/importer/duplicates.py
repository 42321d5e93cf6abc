"""Stage 3 of an import: duplicate keys, against this file and every earlier import.

A row is a duplicate when an earlier row of the file, or an interaction already stored, has the
same user, item, time, quantity, unit price and basket, compared in the form they are stored in
(a missing quantity is 1, a missing price is value / quantity). The first occurrence is kept.
`seed_existing` must run inside the import's write transaction: keys read before the lock
could miss rows that a concurrent import is committing (which doubled data, issue 10 #1).
A chunked import keeps the keys of the rows kept so far in `SeenKeys` (O(unique keys)).
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.importer.checks import CODE, Classified
from storage.importer.reading import mix64, text_hashes

KEY_NAMES = ("user", "item", "ts", "quantity", "price", "basket")


class SeenKeys:
    """The keys of every row kept so far (the workspace's interactions, then this import's kept
    rows chunk by chunk), to mark a later row with the same key as `duplicate`.

    Held as one 64-bit hash per key with where that row is stored (8 + 8 bytes per kept row, so
    this state is O(unique keys): ~100 MB for 6M kept rows) in sorted runs merged like a
    log-structured merge tree; a candidate whose hash is found is compared column by column
    with the stored row, so a hash collision can never drop a row. Where: a staging row number
    (>= 0, this import) or -id of an interaction already in the workspace."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(h) for h, _ in self._runs)

    def add(self, hashes: np.ndarray, where: np.ndarray) -> None:
        if not len(hashes):
            return
        order = np.argsort(hashes, kind="stable")
        self._runs.append((hashes[order], where[order]))
        # Merge while the newest run is at least half the one before: O(log n) runs, each key
        # copied O(log n) times in all; a merge of two sorted runs needs no sort.
        while len(self._runs) > 1 and 2 * len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            (h2, w2), (h1, w1) = self._runs.pop(), self._runs.pop()
            # Where each key of the newer run lands among the older one's, after its equals.
            at = np.searchsorted(h1, h2, side="right") + np.arange(len(h2))
            older = np.ones(len(h1) + len(h2), dtype=bool)
            older[at] = False
            h = np.empty(len(older), dtype=np.uint64)
            w = np.empty(len(older), dtype=np.int64)
            h[at], w[at] = h2, w2
            h[older], w[older] = h1, w1
            del h1, w1, h2, w2, older, at
            self._runs.append((h, w))

    def matches(self, hashes: np.ndarray) -> list[tuple[int, int]]:
        """(index into `hashes`, where) for every stored key with the same hash."""
        out: list[tuple[int, int]] = []
        if not len(hashes):
            return out
        # Sorted needles walk each run in order: several times faster than random probes.
        order = np.argsort(hashes)
        needles = hashes[order]
        for run_hashes, run_where in self._runs:
            left = np.searchsorted(run_hashes, needles, side="left")
            inside = left < len(run_hashes)
            found = np.zeros(len(needles), dtype=bool)
            found[inside] = run_hashes[left[inside]] == needles[inside]
            for slot in np.flatnonzero(found).tolist():
                at = int(left[slot])
                while at < len(run_hashes) and run_hashes[at] == needles[slot]:
                    out.append((int(order[slot]), int(run_where[at])))
                    at += 1
        return out


def key_hashes(user: pa.ChunkedArray, item: pa.ChunkedArray, ts: np.ndarray,
               quantity: np.ndarray, price: np.ndarray,
               basket: pa.ChunkedArray | None) -> np.ndarray:
    """One 64-bit hash per row of the key in its stored form (see the module docstring)."""
    h = mix64(text_hashes(user), text_hashes(item))
    h = mix64(h, ts.astype(np.int64).view(np.uint64))
    h = mix64(h, _float_bits(quantity))
    h = mix64(h, _float_bits(price))
    empty = text_hashes(pa.array([""], pa.string()))
    h = mix64(h, text_hashes(basket) if basket is not None else np.repeat(empty, len(ts)))
    return h


def _float_bits(values: np.ndarray) -> np.ndarray:
    """Bit patterns, with every missing number (NaN) folded to one pattern."""
    return np.where(np.isnan(values), np.nan, values).astype(np.float64).view(np.uint64)


def seed_existing(conn: sqlite3.Connection, seen: SeenKeys, batch_rows: int) -> None:
    """Add the keys of the interactions already in the workspace, `batch_rows` at a time."""
    cursor = conn.execute(
        "SELECT x.id, u.external_id, i.external_id, x.ts, x.quantity, x.price, x.basket "
        "FROM interactions x JOIN users u ON u.id = x.user_id JOIN items i ON i.id = x.item_id"
    )
    while rows := cursor.fetchmany(batch_rows):
        columns = list(zip(*rows, strict=True))
        ids = np.asarray(columns[0], dtype=np.int64)

        def numbers(values: tuple) -> np.ndarray:
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        hashes = key_hashes(
            pa.chunked_array([pa.array(columns[1], pa.string())]),
            pa.chunked_array([pa.array(columns[2], pa.string())]),
            np.asarray(columns[3], dtype=np.int64), numbers(columns[4]), numbers(columns[5]),
            pa.chunked_array([pa.array(columns[6], pa.string())]),
        )
        seen.add(hashes, -ids)


def mark_duplicates(rows: Classified, seen: SeenKeys, conn: sqlite3.Connection,
                    user_ids: dict[str, int], item_ids: dict[str, int]) -> None:
    """Set the `duplicate` reason on this chunk's rows still kept whose key an earlier row of
    the chunk, an earlier chunk or the workspace holds. `user_ids` / `item_ids` map the external
    ids known so far (stored rows hold integer ids)."""
    candidates = np.flatnonzero(rows.reason == 0)
    if not len(candidates):
        return
    picked = pa.array(candidates)
    user, item = rows.user.take(picked), rows.item.take(picked)
    basket = rows.basket.take(picked) if rows.basket is not None else None
    ts, quantity, price = rows.ts[candidates], rows.quantity[candidates], rows.price[candidates]
    no_basket = pa.chunked_array([pa.nulls(len(candidates), pa.string())])
    within = duplicate_rows([user, item, ts, quantity, price,
                             basket if basket is not None else no_basket])
    rows.reason[candidates[within]] = CODE["duplicate"]
    first = np.flatnonzero(~within)
    hashes = key_hashes(user.take(pa.array(first)), item.take(pa.array(first)), ts[first],
                        quantity[first], price[first],
                        basket.take(pa.array(first)) if basket is not None else None)
    found = seen.matches(hashes)
    if not found:
        return
    stored = _stored_keys(conn, sorted({where for _, where in found}))
    users, items = user.to_pylist(), item.to_pylist()
    baskets = basket.to_pylist() if basket is not None else None
    for index, where in found:
        row = int(first[index])
        mine = (user_ids.get(users[row]), item_ids.get(items[row]), int(ts[row]),
                float(quantity[row]), float(price[row]), (baskets[row] if baskets else None) or "")
        if _same_key(mine, stored[where]):
            rows.reason[candidates[row]] = CODE["duplicate"]


def _stored_keys(conn: sqlite3.Connection, wheres: list[int]) -> dict[int, tuple]:
    """The stored keys (user_id, item_id, ts, quantity, price, basket) of the given rows."""
    out: dict[int, tuple] = {}
    staged = [w for w in wheres if w >= 0]
    old = [-w for w in wheres if w < 0]
    for table, key, ids, sign in (("temp.import_staging", "n", staged, 1),
                                  ("interactions", "id", old, -1)):
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            for row in conn.execute(
                f"SELECT {key}, user_id, item_id, ts, quantity, price, basket FROM {table} "
                f"WHERE {key} IN ({','.join('?' * len(part))})", part,
            ):
                out[sign * row[0]] = (row[1], row[2], row[3], row[4], row[5], row[6] or "")
    return out


def _same_key(mine: tuple, stored: tuple) -> bool:
    for a, b in zip(mine, stored, strict=True):
        a = float("nan") if a is None and isinstance(b, float) else a
        b = float("nan") if b is None and isinstance(a, float) else b
        if isinstance(a, float) and isinstance(b, float):
            if a != b and not (a != a and b != b):  # NaN equals NaN: both are missing
                return False
        elif a != b:
            return False
    return True


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
