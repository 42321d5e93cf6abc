"""Runs DynLLM over a stretch of the timeline in time-ordered batches — the one loop shared by
training, validation, testing and replay.

Per batch: apply the previous batch's memory messages, embed the batch's users (profiles looked
up at the batch start) and the items, then either train on BPR or rank every event's true item
against all items, and finally leave this batch's messages. Evaluation batches update memory
after they are scored, as in TGN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from models.data.events import EventLog
from models.data.neighbors import NeighborFinder
from models.data.profile_index import ProfileIndex
from models.evaluation.metrics import Candidates, rank_chunk
from models.evaluation.protocols import batch_protocols
from models.network.dynllm import DynLLM, bpr_loss, sample_negatives
from models.network.item_table import ItemTable, item_table_supported
from models.network.memory import NodeMemory


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; names the batch so the run can be diagnosed."""


@dataclass
class StreamResult:
    losses: list[float] = field(default_factory=list)  # one per batch (training only)
    ranks: dict[str, torch.Tensor] = field(default_factory=dict)  # protocol -> [n_events]

    @property
    def mean_loss(self) -> float:
        return float(np.mean(self.losses)) if self.losses else float("nan")


@dataclass
class BatchView:
    """What a callback sees after each batch (replay uses it for facet weights)."""

    index: int
    n_batches: int
    events: range
    loss: float | None
    facet_weights: torch.Tensor | None
    user_embeddings: torch.Tensor


def profile_inputs(
    model: DynLLM, profiles: ProfileIndex | None, users: np.ndarray, cut_time: float
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    if model.config.no_profiles:
        return None, None
    if profiles is None:
        raise ValueError("this model uses profiles but none were given")
    return profiles.lookup(users, np.full(len(users), cut_time))


def shared_rows(users: np.ndarray, times: np.ndarray) -> np.ndarray:
    """For each event of a batch, the first event with the same (user, time): in eval mode
    those have the same user embedding (same memory, neighbours, gap, profile and repeat
    evidence), so their item scores are computed once. A basket of twenty lines is one row."""
    keys = np.stack((users.astype(np.float64), times), axis=1)
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def ranks_of_shared_rows(
    user_rows: torch.Tensor,
    same_as: np.ndarray,
    item_matrix: torch.Tensor,
    true_items: torch.Tensor,
    protocols: dict[str, Candidates],
    chunk: int = 1024,
    adjust: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """models.evaluation.metrics.protocol_ranks_in_chunks for rows where row b equals row
    same_as[b]: each chunk's scores are computed for its distinct rows only, then spread to the
    events (the per-event parts, the repeat term and the ranking, stay per event)."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in protocols}
    for lo in range(0, len(user_rows), chunk):
        hi = min(lo + chunk, len(user_rows))
        distinct, spread = np.unique(same_as[lo:hi], return_inverse=True)
        scores = user_rows[torch.as_tensor(distinct, device=user_rows.device)] @ item_matrix.T
        if (adjust is None and len(distinct) < hi - lo and torch.isfinite(scores).all()
                and all(c is None for c in protocols.values())):
            r = _full_ranks_by_row(scores, spread.reshape(-1), true_items[lo:hi])
            for name in protocols:
                parts[name].append(r)
            continue
        if len(distinct) < hi - lo:
            scores = scores.index_select(0, torch.as_tensor(spread.reshape(-1),
                                                            device=scores.device))
        for name, r in rank_chunk(scores, lo, true_items, protocols, adjust).items():
            parts[name].append(r)
    return {name: torch.cat(p) if p else torch.zeros(0, dtype=torch.float64)
            for name, p in parts.items()}


def _full_ranks_by_row(scores: torch.Tensor, row_of: np.ndarray,
                       true_items: torch.Tensor) -> torch.Tensor:
    """protocol_ranks under the full protocol for events whose scores are row row_of[b] of
    `scores` (finite): the same sign sums, taken row by row against that row's events, so the
    [events, n_items] matrix is never written out."""
    device = scores.device
    true_items = true_items.to(device)
    order = np.argsort(row_of, kind="stable")
    bounds = np.searchsorted(row_of[order], np.arange(len(scores) + 1))
    totals = torch.empty(len(row_of), dtype=torch.float64, device=device)
    for row in range(len(scores)):
        events = torch.as_tensor(order[bounds[row]:bounds[row + 1]], device=device)
        if not len(events):
            continue
        line = scores[row]
        diffs = line.unsqueeze(0) - line[true_items[events]].unsqueeze(1)
        totals[events] = diffs.sign_().sum(1).double()
    return ((totals + scores.shape[1] + 1) / 2).cpu()


def run_batches(
    model: DynLLM,
    memory: NodeMemory,
    finder: NeighborFinder,
    log: EventLog,
    batches: list[range],
    profiles: ProfileIndex | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    rng: np.random.Generator | None = None,
    reg: float = 1e-5,
    grad_clip: float | None = 5.0,
    candidates: dict[str, torch.Tensor | None] | None = None,
    chunk: int = 1024,
    on_batch: Callable[[BatchView], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    epoch: int | None = None,
    item_table: bool = True,
) -> StreamResult:
    """Train on `batches` when an optimizer is given; otherwise score them (ranking the true
    item under each protocol in `candidates`, e.g. {"full": None}) without gradients. Batches
    must be consecutive in time after whatever `memory` has already seen.

    Ranking embeds all items at every batch: `item_table` (the default) takes them from an
    ItemTable, which shares across batches what did not change (models/network/item_table.py);
    False recomputes them with DynLLM.item_embeddings (the reference the tests compare with)."""
    training = optimizer is not None
    if training and rng is None:
        raise ValueError("training needs an rng for negative sampling")
    model.train(training)
    result = StreamResult(ranks={name: [] for name in (candidates or {})})
    all_items = np.arange(model.n_items)
    table = (ItemTable(model) if candidates and not training and item_table
             and item_table_supported(model) else None)
    for b, events in enumerate(batches):
        if should_stop is not None and should_stop():
            break
        users = log.user_idx[events.start:events.stop]
        items = log.item_idx[events.start:events.stop]
        times = log.ts[events.start:events.stop]
        cut = float(times[0])  # everything used below is from strictly before this time
        loss_value = None
        with torch.set_grad_enabled(training):
            model.begin_batch(memory)
            facets, mask = profile_inputs(model, profiles, users, cut)
            user_out = model.user_embeddings(memory, finder, users, times, cut, facets, mask)
            if training:
                negatives = sample_negatives(rng, items, model.n_items)
                needed, inverse = np.unique(np.concatenate((items, negatives)), return_inverse=True)
                item_emb = model.item_embeddings(memory, finder, needed, cut)
                inverse = torch.as_tensor(inverse, device=model.device)
                pos, neg = item_emb[inverse[: len(items)]], item_emb[inverse[len(items):]]
                extra = None
                if user_out.adjust is not None:
                    pos_extra, neg_extra = (
                        user_out.pair_terms(torch.as_tensor(x).to(model.device))
                        for x in (items, negatives))
                    extra = pos_extra - neg_extra
                loss = bpr_loss(user_out.embedding, pos, neg, reg, extra)
                if not torch.isfinite(loss):
                    where = f"epoch {epoch}, " if epoch is not None else ""
                    raise NonFiniteLossError(
                        f"loss is {loss.item()} at {where}batch {b + 1}/{len(batches)} "
                        f"(events {events.start}..{events.stop - 1}); training stopped")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                loss_value = float(loss.detach())
                result.losses.append(loss_value)
            elif not candidates:  # replaying memory only: embed just the batch's items
                needed, inverse = np.unique(items, return_inverse=True)
                item_emb = model.item_embeddings(memory, finder, needed, cut)
                pos = item_emb[torch.as_tensor(inverse, device=model.device)]
            else:
                item_emb = (table.embeddings(memory, finder, cut) if table is not None
                            else model.item_embeddings(memory, finder, all_items, cut))
                true = torch.as_tensor(items, device=model.device)
                ranks = ranks_of_shared_rows(
                    user_out.embedding, shared_rows(users, times), item_emb, true,
                    batch_protocols(candidates, events), chunk,
                    adjust=user_out.adjust)
                for name, r in ranks.items():
                    result.ranks[name].append(r)
                pos = item_emb[true]
            model.end_batch(memory, users, items, times, user_out.embedding, pos)
        if on_batch is not None:
            on_batch(BatchView(b, len(batches), events, loss_value,
                               None if user_out.facet_weights is None
                               else user_out.facet_weights.detach(),
                               user_out.embedding.detach()))
    result.ranks = {
        name: torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
        for name, parts in result.ranks.items()
    }
    return result
