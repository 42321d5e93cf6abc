"""Replay a trained model over the whole timeline: what the analyst browses afterwards.

Returns, without touching any storage: every user's top-k items from the final state (three
lists: all items, the items the user bought before, the items new to the user), the facet
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

# The lists replay ranks for every user: every item, the items the user bought before, and
# the items new to the user. Names as the workspace stores them (recommendations.list).
LISTS: tuple[str, ...] = ("all", "buy-again", "discover")


@dataclass
class Recommendations:
    users: np.ndarray  # int64 [U]
    items: np.ndarray  # int64 [U, k], best first; -1 past the end of a user's shorter list
    scores: np.ndarray  # float32 [U, k]; -inf where items is -1
    bought: np.ndarray  # bool [U, k]: the user bought the item before the time ranked at

    def lengths(self) -> np.ndarray:
        """int64 [U]: how many items each user's list holds (the valid ones come first)."""
        return (self.items >= 0).sum(axis=1)


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
    recommendations: Recommendations  # the "all" list, as before there were three
    facet_weights: FacetWeights | None  # None for a model without profiles
    memory_trace: MemoryTrace
    lists: dict[str, Recommendations]  # every name of LISTS -> its list ("all" included)
    at: float  # the time the lists are ranked at (just after the last event)


def _pca_2d(states: torch.Tensor) -> torch.Tensor:
    if len(states) < 2:
        return torch.zeros(len(states), 2)
    centred = states - states.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    out = centred @ v[:2].T
    return out if out.shape[1] == 2 else torch.nn.functional.pad(out, (0, 2 - out.shape[1]))


def seen_pairs(log: EventLog, at: float) -> np.ndarray:
    """The distinct (user, item) pairs bought before `at`, as sorted keys user * n_items + item:
    a user's pairs are one contiguous run, so a block of users takes one slice of it."""
    before = log.ts < at
    return np.unique(log.user_idx[before].astype(np.int64) * log.n_items
                     + log.item_idx[before].astype(np.int64))


def _seen_block(keys: np.ndarray, n_items: int, lo: int, hi: int) -> torch.Tensor:
    """bool [hi - lo, n_items]: which items users lo..hi-1 bought (from `seen_pairs`). Built per
    block of users, so memory stays one block wide however many users there are."""
    start, stop = np.searchsorted(keys, [lo * n_items, hi * n_items])
    block = keys[start:stop]
    seen = torch.zeros(hi - lo, n_items, dtype=torch.bool)
    seen[torch.as_tensor(block // n_items - lo), torch.as_tensor(block % n_items)] = True
    return seen


def _ranked(values: torch.Tensor, indices: torch.Tensor, seen: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(items, scores, bought) of one topk: an entry that was masked out (-inf: the user has
    fewer candidates than k) becomes item -1, so a short list keeps only its real items."""
    valid = torch.isfinite(values)
    bought = seen.gather(1, indices) & valid
    return torch.where(valid, indices, -1), values, bought


def _stack(users: np.ndarray, parts: list) -> Recommendations:
    items, scores, bought = (torch.cat([p[n] for p in parts]).numpy() for n in range(3))
    return Recommendations(users, items.astype(np.int64), scores.astype(np.float32), bought)


@torch.no_grad()
def top_items(
    model: DynLLM, memory, finder: NeighborFinder, log: EventLog,
    profiles: ProfileIndex | None, at: float, *, k: int = 50, exclude_seen: bool = False,
    chunk: int = 1024,
) -> dict[str, Recommendations]:
    """Every user's k best items as of time `at` (everything before `at` known), as three lists
    (LISTS): "all" items (without the ones bought before under `exclude_seen`), "buy-again"
    (only items bought before `at`) and "discover" (only items not bought before `at`). One
    pass over the users: each block's scores are computed once and ranked three ways."""
    model.eval()
    items = model.item_embeddings(memory, finder, np.arange(log.n_items), at)
    k = min(k, log.n_items)
    keys = seen_pairs(log, at)
    parts: dict[str, list] = {name: [] for name in LISTS}
    for lo in range(0, log.n_users, chunk):
        users = np.arange(lo, min(lo + chunk, log.n_users))
        times = np.full(len(users), at)
        facets, mask = profile_inputs(model, profiles, users, at)
        out = model.user_embeddings(memory, finder, users, times, at, facets, mask)
        scores = out.embedding @ items.T
        if out.adjust is not None:
            scores = out.adjust(scores, 0)
        scores = scores.cpu()
        seen = _seen_block(keys, log.n_items, lo, lo + len(users))
        discover = scores.masked_fill(seen, -torch.inf).topk(k, dim=1)
        parts["discover"].append(_ranked(discover.values, discover.indices, seen))
        # "all" under exclude_seen is the discover list: the same ranking, kept once.
        every = discover if exclude_seen else scores.topk(k, dim=1)
        parts["all"].append(_ranked(every.values, every.indices, seen))
        # The block's scores are not needed after this: masked in place, no second copy.
        again = scores.masked_fill_(~seen, -torch.inf).topk(k, dim=1)
        parts["buy-again"].append(_ranked(again.values, again.indices, seen))
    return {name: _stack(np.arange(log.n_users), parts[name]) for name in LISTS}


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
    lists = top_items(model, memory, finder, log, profiles, at, k=k, exclude_seen=exclude_seen)
    return ReplayResult(lists["all"], _facet_weights(model, log, weight_parts),
                        _trace(trace_users, trace_ts, trace_states), lists, at)


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
