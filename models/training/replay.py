"""Replay a trained model over the whole timeline: what the analyst browses afterwards.

Returns, without touching any storage: every user's top-k items from the final state, the facet
relevance weights at each (user, time) the user bought something, and a memory trace (per user
per memory update: time, norm, cosine drift from the previous state, 2-D PCA coordinates from
one PCA fitted over all users' states).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from models.data.events import EventLog, time_batches
from models.data.neighbors import NeighborFinder
from models.data.profile_index import ProfileIndex
from models.network.dynllm import DynLLM
from models.training.stream import BatchView, profile_inputs, run_batches


@dataclass
class Recommendations:
    users: np.ndarray  # int64 [U]
    items: np.ndarray  # int64 [U, k], best first
    scores: np.ndarray  # float32 [U, k]


@dataclass
class FacetWeights:
    users: np.ndarray  # int64 [m]
    ts: np.ndarray  # float64 [m]
    weights: np.ndarray  # float32 [m, n_facets]
    facets: tuple[str, ...]


@dataclass
class MemoryTrace:
    users: np.ndarray  # int64 [m]
    ts: np.ndarray  # float64 [m], time of the event that produced the update
    norm: np.ndarray  # float32 [m]
    drift: np.ndarray  # float32 [m], 1 - cosine with the user's previous state (0 for the first)
    xy: np.ndarray  # float32 [m, 2]


@dataclass
class ReplayResult:
    recommendations: Recommendations
    facet_weights: FacetWeights | None  # None for a model without profiles
    memory_trace: MemoryTrace


def _pca_2d(states: torch.Tensor) -> torch.Tensor:
    if len(states) < 2:
        return torch.zeros(len(states), 2)
    centred = states - states.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    out = centred @ v[:2].T
    return out if out.shape[1] == 2 else torch.nn.functional.pad(out, (0, 2 - out.shape[1]))


@torch.no_grad()
def top_items(
    model: DynLLM, memory, finder: NeighborFinder, log: EventLog,
    profiles: ProfileIndex | None, at: float, *, k: int = 50, exclude_seen: bool = False,
    chunk: int = 1024,
) -> Recommendations:
    """Every user's k best items as of time `at` (everything before `at` known)."""
    model.eval()
    items = model.item_embeddings(memory, finder, np.arange(log.n_items), at)
    k = min(k, log.n_items)
    seen = None
    if exclude_seen:
        seen = torch.zeros(log.n_users, log.n_items, dtype=torch.bool)
        before = log.ts < at
        seen[torch.as_tensor(log.user_idx[before]), torch.as_tensor(log.item_idx[before])] = True
    out_items, out_scores = [], []
    for lo in range(0, log.n_users, chunk):
        users = np.arange(lo, min(lo + chunk, log.n_users))
        times = np.full(len(users), at)
        facets, mask = profile_inputs(model, profiles, users, at)
        out = model.user_embeddings(memory, finder, users, times, at, facets, mask)
        scores = out.embedding @ items.T
        if out.repeat is not None:
            scores = out.repeat.add_to(scores)
        scores = scores.cpu()
        if seen is not None:
            scores[seen[lo:lo + len(users)]] = -torch.inf
        top = scores.topk(k, dim=1)
        out_items.append(top.indices)
        out_scores.append(top.values)
    return Recommendations(np.arange(log.n_users), torch.cat(out_items).numpy(),
                           torch.cat(out_scores).numpy())


@torch.no_grad()
def replay(
    model: DynLLM,
    log: EventLog,
    profiles: ProfileIndex | None = None,
    *,
    batch_size: int = 2048,
    k: int = 50,
    exclude_seen: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    finder, memory = NeighborFinder(log), model.new_memory()
    weight_parts, trace_users, trace_ts, trace_states = [], [], [], []

    def on_batch(view: BatchView) -> None:
        if view.facet_weights is not None:
            weight_parts.append(view.facet_weights.float().cpu())
        if progress is not None:
            progress(view.index + 1, view.n_batches)

    batches = time_batches(log, range(len(log)), batch_size)
    # Record the user rows each batch committed (the previous batch's users, see memory.py).
    for events in batches + [None]:
        pending = memory.pending["user"]
        # The time of the event each pending message came from, before this batch moves it on.
        pending_ts = None if pending is None else memory.last_update[pending.ids].copy()
        if events is None:  # flush the last batch's messages into the final state
            model.begin_batch(memory)
            memory.commit()
        else:
            run_batches(model, memory, finder, log, [events], profiles, on_batch=on_batch)
        if pending is not None and len(pending.ids):
            trace_users.append(pending.ids)
            trace_ts.append(pending_ts)
            trace_states.append(memory.state[torch.as_tensor(pending.ids)].cpu().clone())

    at = float(np.nextafter(log.ts[-1], np.inf)) if len(log) else 0.0
    recs = top_items(model, memory, finder, log, profiles, at, k=k, exclude_seen=exclude_seen)
    return ReplayResult(recs, _facet_weights(model, log, weight_parts),
                        _trace(trace_users, trace_ts, trace_states))


def _facet_weights(model: DynLLM, log: EventLog, parts: list) -> FacetWeights | None:
    if model.config.no_profiles or not parts:
        return None
    weights = torch.cat(parts).numpy()
    # One row per (user, time): the events of one basket share their weights.
    key = np.stack((log.user_idx, log.ts.view(np.int64)), axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    # A user with no profile yet has an all-zero row (FacetAttention): nothing to show. Within a
    # kept row, a zero is an absent facet (masked), which the caller shows as "not available".
    first = first[weights[first].sum(axis=1) > 0]
    return FacetWeights(log.user_idx[first], log.ts[first], weights[first], model.config.facets)


def _trace(users: list, ts: list, states: list) -> MemoryTrace:
    if not users:
        empty = np.zeros(0)
        return MemoryTrace(empty.astype(np.int64), empty, empty, empty, np.zeros((0, 2)))
    users_a, ts_a = np.concatenate(users), np.concatenate(ts)
    states_t = torch.cat(states).float()
    # Drift: compare each state with the same user's previous one (rows are in time order).
    order = np.lexsort((np.arange(len(users_a)), users_a))
    prev = np.full(len(users_a), -1)
    same = users_a[order][1:] == users_a[order][:-1]
    prev[order[1:][same]] = order[:-1][same]
    has_prev = torch.as_tensor(prev >= 0)
    cos = torch.nn.functional.cosine_similarity(
        states_t, states_t[torch.as_tensor(np.clip(prev, 0, None))], dim=1)
    drift = torch.where(has_prev, 1 - cos, torch.zeros_like(cos))
    return MemoryTrace(users_a, ts_a, states_t.norm(dim=1).numpy(), drift.numpy(),
                       _pca_2d(states_t).numpy())
