"""The workspace as the model sees it: the event log, item text vectors and profile vectors,
read once and shared by the training, evaluation and replay jobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.vocabulary import PROFILE_FIELDS
from storage.errors import DynllmError
from storage.profiles import load_embeddings
from storage.workspace import Workspace


@dataclass
class WorkspaceData:
    """The workspace as the model sees it: dense indices and the maps back to database ids."""

    log: Any  # models.data.events.EventLog
    user_ids: np.ndarray  # dense user index -> users.id
    item_ids: np.ndarray  # dense item index -> items.id
    item_text: Any  # torch.Tensor [n_items, d] or None
    profiles: Any  # models.data.profile_index.ProfileIndex or None


def load_workspace_data(ws: Workspace, *, use_profiles: bool = True) -> WorkspaceData:
    import torch

    from models.data.events import EventLog
    from models.data.profile_index import ProfileIndex

    rows = ws.conn.execute(
        "SELECT user_id, item_id, ts, basket FROM interactions ORDER BY ts, id").fetchall()
    if not rows:
        raise DynllmError(f"{ws.path} has no interactions: import a purchase log first")
    user_col = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    item_col = np.fromiter((r[1] for r in rows), np.int64, len(rows))
    ts = np.fromiter((r[2] for r in rows), np.float64, len(rows))
    baskets = {}
    group = np.fromiter((baskets.setdefault((r[0], r[3]) if r[3] is None else r[3], len(baskets))
                         for r in rows), np.int64, len(rows))
    user_ids, user_idx = np.unique(user_col, return_inverse=True)
    item_ids = np.array([r[0] for r in ws.conn.execute("SELECT id FROM items ORDER BY id")],
                        dtype=np.int64)
    item_idx = np.searchsorted(item_ids, item_col)
    log = EventLog.from_arrays(user_idx, item_idx, ts, len(user_ids), len(item_ids), group)

    from dynllm_tui.jobs.profiles import stored_encoder_name

    encoder = stored_encoder_name(ws)  # the name vectors are stored under; loads nothing
    keys, matrix = load_embeddings(ws, "item", encoder)
    item_text = None
    if keys:
        position = {int(k): n for n, k in enumerate(keys)}
        if all(int(i) in position for i in item_ids):
            item_text = torch.from_numpy(matrix[[position[int(i)] for i in item_ids]])

    profiles = None
    if use_profiles:
        vectors = load_profile_vectors(ws, encoder)
        known = np.isin(vectors["user"], user_ids)
        if known.any():
            profiles = ProfileIndex(
                np.searchsorted(user_ids, vectors["user"][known]),
                vectors["as_of"][known],
                torch.from_numpy(np.ascontiguousarray(vectors["vectors"][known])),
                facet_mask=torch.from_numpy(vectors["present"][known]),
            )
    return WorkspaceData(log, user_ids, item_ids, item_text, profiles)


def load_profile_vectors(ws: Workspace, encoder_name: str) -> dict[str, Any]:
    """Arrays for the model: per snapshot (user, as_of) the four facet vectors [n, 4, d] and
    which facets are present [n, 4]. A facet is absent when its text is empty: the LLM had no
    source for it (e.g. no brand anywhere in the catalogue), so its vector — the embedding of
    nothing — must not be attended to."""
    keys, matrices = None, []
    for facet in PROFILE_FIELDS:
        facet_keys, matrix = load_embeddings(ws, f"profile.{facet}", encoder_name)
        if keys is None:
            keys = facet_keys
        elif facet_keys != keys:
            raise DynllmError("facet embeddings are incomplete: rerun dynllm-tui profiles")
        matrices.append(matrix)
    n_facets = len(PROFILE_FIELDS)
    if not keys:
        return {"user": np.zeros(0, np.int64), "as_of": np.zeros(0, np.int64),
                "vectors": np.zeros((0, n_facets, 0), np.float32),
                "present": np.zeros((0, n_facets), bool)}
    user, as_of = zip(*(tuple(map(int, k.split("@"))) for k in keys), strict=True)
    return {"user": np.array(user, np.int64), "as_of": np.array(as_of, np.int64),
            "vectors": np.stack(matrices, axis=1), "present": _present_facets(ws, keys)}


def _present_facets(ws: Workspace, keys: list[str]) -> np.ndarray:
    """bool [len(keys), n_facets]: the snapshot's facet text is not empty."""
    from dynllm_tui.jobs.profiles import profile_facet_texts

    texts = profile_facet_texts(ws)
    present = np.zeros((len(keys), len(PROFILE_FIELDS)), bool)
    row = {key: n for n, key in enumerate(keys)}
    for f, field in enumerate(PROFILE_FIELDS):
        for key, text in texts[f"profile.{field}"]:
            if key in row:
                present[row[key], f] = bool(text.strip())
    return present
