"""Workspace side of profiles: histories to profile, profiles made, vectors of texts.

Plain data in and out (dicts, tuples, numpy arrays) so that jobs can hand them to `models/`
without either side importing the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from storage.workspace import Workspace


def interaction_arrays(ws: Workspace) -> dict[str, np.ndarray]:
    """The whole log as numpy arrays sorted by (ts, id): user, item, ts, quantity, basket id."""
    rows = ws.conn.execute(
        "SELECT user_id, item_id, ts, quantity FROM interactions ORDER BY ts, id"
    ).fetchall()
    data = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return {
        "user": data[:, 0].astype(np.int64),
        "item": data[:, 1].astype(np.int64),
        "ts": data[:, 2].astype(np.int64),
        "quantity": data[:, 3],
    }


@dataclass(frozen=True)
class HistoryEvent:
    ts: int
    item_id: int
    item_key: str
    title: str | None
    category: str | None
    brand: str | None
    quantity: float | None
    price: float | None  # unit price; NULL when the file had none
    value: float | None  # the line's value


@dataclass(frozen=True)
class UserRecord:
    user_id: int
    external_id: str
    attributes: dict[str, Any]


def user_record(ws: Workspace, user_id: int) -> UserRecord:
    row = ws.conn.execute(
        "SELECT id, external_id, attributes FROM users WHERE id = ?", (user_id,)
    ).fetchone()
    if row is None:
        raise KeyError(user_id)
    return UserRecord(row[0], row[1], json.loads(row[2] or "{}"))


def user_history(ws: Workspace, user_id: int, before: int) -> list[HistoryEvent]:
    """The user's interactions strictly before `before`, oldest first, with item text."""
    rows = ws.conn.execute(
        "SELECT x.ts, x.item_id, i.external_id, i.title, i.category, i.brand, x.quantity, "
        "x.price, x.value FROM interactions x JOIN items i ON i.id = x.item_id "
        "WHERE x.user_id = ? AND x.ts < ? ORDER BY x.ts, x.id",
        (user_id, before),
    ).fetchall()
    return [HistoryEvent(*row) for row in rows]


def store_lines_before(ws: Workspace, before: int) -> dict[str, np.ndarray]:
    """Unit price, value and quantity of every line of the store strictly before `before`
    (NULL as NaN): what the store's median price at a snapshot may be computed from."""
    rows = ws.conn.execute(
        "SELECT price, value, quantity FROM interactions WHERE ts < ?", (before,)
    ).fetchall()
    data = np.array(rows, dtype=np.float64).reshape(-1, 3)  # None becomes NaN
    return {"price": data[:, 0], "value": data[:, 1], "quantity": data[:, 2]}


def profile_states(ws: Workspace) -> dict[tuple[int, int], tuple[str, str]]:
    """(user_id, as_of) -> (status, input_hash) of every stored snapshot, for resuming."""
    return {
        (user, as_of): (status, digest)
        for user, as_of, status, digest in ws.conn.execute(
            "SELECT user_id, as_of, status, input_hash FROM profiles"
        )
    }


PROFILE_FIELDS = (
    "status", "crowd_segment", "interests", "preferred_categories", "favored_brands",
    "categories_source", "brands_source", "n_events", "model", "prompt_version", "input_hash",
    "raw", "error", "prompt_tokens", "output_tokens", "seconds",
)
_LIST_FIELDS = ("interests", "preferred_categories", "favored_brands")


def save_profile(ws: Workspace, user_id: int, as_of: int, record: dict[str, Any]) -> None:
    """Insert or replace one snapshot, committed at once (a killed job keeps what it made)."""
    values = {k: record.get(k) for k in PROFILE_FIELDS}
    for key in _LIST_FIELDS:
        if values[key] is not None and not isinstance(values[key], str):
            values[key] = json.dumps(list(values[key]), ensure_ascii=False)
    values["created_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    columns = ["user_id", "as_of", *values]
    with ws.transaction() as conn:
        conn.execute(
            f"INSERT INTO profiles ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) "
            "ON CONFLICT(user_id, as_of) DO UPDATE SET "
            + ", ".join(f"{c}=excluded.{c}" for c in values),
            (user_id, as_of, *values.values()),
        )


def user_profiles(ws: Workspace, user_id: int) -> list[dict[str, Any]]:
    """All snapshots of one user, oldest first, list facets decoded."""
    cursor = ws.conn.execute(
        "SELECT * FROM profiles WHERE user_id = ? ORDER BY as_of", (user_id,)
    )
    names = [d[0] for d in cursor.description]
    out = []
    for row in cursor:
        record = dict(zip(names, row, strict=True))
        for key in _LIST_FIELDS:
            record[key] = json.loads(record[key]) if record[key] else []
        out.append(record)
    return out


def stored_text_hashes(ws: Workspace, kind: str, model: str) -> dict[str, str]:
    """key -> hash of the text its stored vector was made from."""
    return dict(ws.conn.execute(
        "SELECT key, text_hash FROM embeddings WHERE kind = ? AND model = ?", (kind, model)
    ))


def save_embeddings(
    ws: Workspace, kind: str, model: str, rows: list[tuple[str, str, np.ndarray]]
) -> None:
    """Store (key, text_hash, vector) rows in one transaction."""
    with ws.transaction() as conn:
        conn.executemany(
            "INSERT INTO embeddings (kind, key, model, text_hash, dim, vector) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(kind, key, model) DO UPDATE SET "
            "text_hash=excluded.text_hash, dim=excluded.dim, vector=excluded.vector",
            [(kind, key, model, digest, int(vec.shape[0]),
              np.asarray(vec, dtype=np.float32).tobytes()) for key, digest, vec in rows],
        )


def load_embeddings(ws: Workspace, kind: str, model: str) -> tuple[list[str], np.ndarray]:
    """Keys and a float32 matrix of every stored vector of one kind and model."""
    rows = ws.conn.execute(
        "SELECT key, dim, vector FROM embeddings WHERE kind = ? AND model = ? ORDER BY key",
        (kind, model),
    ).fetchall()
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    matrix = np.stack([np.frombuffer(blob, dtype=np.float32, count=dim) for _, dim, blob in rows])
    return [key for key, _, _ in rows], matrix
