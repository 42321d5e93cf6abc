"""Full-ranking metrics: every event's true item is ranked against all items (or, for the paper's
protocol, against a candidate set), in chunks on whatever device the scores live on.

Ties: an item tied with the true item is counted as half above and half below it, i.e.

    rank = #(items scoring strictly higher) + (#(items scoring equal, true item excluded)) / 2 + 1

which is the expected rank under random tie-breaking. A model that gives every item the same
score therefore gets rank (n+1)/2, not 1 (optimistic) or n (pessimistic). The metrics are then
taken of that (possibly fractional) rank: Hit@K = Recall@K = [rank <= K], NDCG@K =
[rank <= K] / log2(rank + 1), MRR@K = [rank <= K] / rank, and MRR = 1 / rank over all items.
With one positive per event Recall@K equals Hit@K; both are reported because readers expect both.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

import numpy as np
import torch

DEFAULT_KS = (10, 20, 50)


def protocol_ranks(
    scores: torch.Tensor,
    true_items: torch.Tensor,
    protocols: dict[str, torch.Tensor | None],
    *,
    overwrite: bool = False,
) -> dict[str, torch.Tensor]:
    """Rank (1 = best, fractional under ties) of true_items[b] in scores[b, :] under each
    protocol: {name: None (all items) or bool [n_items] candidates (the true item always
    competes)}. With `overwrite` the caller's `scores` buffer is reused (and destroyed).

    One pass serves every protocol: with s = sign(scores - true score), the tie rule's rank is
    #greater + (#equal - 1) / 2 + 1 = (sum of s over the competing items + their number + 1) / 2
    (the true item contributes s = 0 and is one of the competitors). The sums are of +-1 and 0,
    exact in float32 below 2**24 items; with candidates the sum is one matrix-vector product."""
    true_items = true_items.to(scores.device)
    true_scores = scores.gather(1, true_items.view(-1, 1))
    diffs = scores.sub_(true_scores) if overwrite else scores - true_scores
    # torch.sign(NaN) is 0, which would quietly count a NaN as a tie. A row sum is a cheap
    # reduction that any NaN (or inf - inf, or +inf and -inf together) turns into NaN.
    if torch.isnan(diffs.sum(1)).any():
        raise ValueError("scores contain NaN (or infinities that cannot be compared); "
                         "refusing to rank them")
    signs = diffs.sign_()
    out = {}
    for name, candidates in protocols.items():
        if candidates is None:
            total = signs.sum(1).double()
            n_competing = torch.full_like(total, signs.shape[1])
        else:
            cand = candidates.to(signs.device)
            total = (signs @ cand.to(signs.dtype)).double()
            n_competing = cand.sum(dtype=torch.float64) + (~cand[true_items]).double()
        out[name] = ((total + n_competing + 1) / 2).cpu()
    return out


def true_item_ranks(
    scores: torch.Tensor, true_items: torch.Tensor, candidates: torch.Tensor | None = None
) -> torch.Tensor:
    """Rank (1 = best, fractional under ties) of true_items[b] in scores[b, :].

    scores: [B, n_items]; true_items: int64 [B]; candidates: optional bool [n_items] — only
    those items compete (the true item always does)."""
    return protocol_ranks(scores, true_items, {"ranks": candidates})["ranks"]


def protocol_ranks_in_chunks(
    score_rows: torch.Tensor,
    item_matrix: torch.Tensor,
    true_items: torch.Tensor,
    protocols: dict[str, torch.Tensor | None],
    chunk: int = 1024,
    adjust: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Ranks for dot-product models under each protocol: scores = score_rows @ item_matrix.T,
    computed once per `chunk` rows, so [chunk, n_items] is the largest matrix ever held.
    `adjust(scores, lo)` may add a per-row term to the chunk starting at row lo (the repeat
    term); it may work in place."""
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in protocols}
    for lo in range(0, len(score_rows), chunk):
        scores = score_rows[lo : lo + chunk] @ item_matrix.T
        if adjust is not None:
            scores = adjust(scores, lo)
        ranks = protocol_ranks(scores, true_items[lo : lo + chunk], protocols, overwrite=True)
        for name, r in ranks.items():
            parts[name].append(r)
    return {name: torch.cat(p) if p else torch.zeros(0, dtype=torch.float64)
            for name, p in parts.items()}


def ranks_in_chunks(
    score_rows: torch.Tensor,
    item_matrix: torch.Tensor,
    true_items: torch.Tensor,
    candidates: torch.Tensor | None = None,
    chunk: int = 1024,
    adjust: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """protocol_ranks_in_chunks for one protocol."""
    return protocol_ranks_in_chunks(score_rows, item_matrix, true_items, {"ranks": candidates},
                                    chunk, adjust)["ranks"]


def metrics_from_ranks(ranks: np.ndarray | torch.Tensor, ks: Iterable[int] = DEFAULT_KS) -> dict:
    """Mean Recall/Hit/NDCG/MRR at each K plus overall MRR; keys like 'recall@10', 'mrr'."""
    r = torch.as_tensor(np.asarray(ranks, dtype=np.float64))
    if not len(r):
        raise ValueError("no events to evaluate")
    out = {}
    for k in ks:
        hit = (r <= k).double()
        out[f"recall@{k}"] = float(hit.mean())
        out[f"hit@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float((hit / torch.log2(r + 1)).mean())
        out[f"mrr@{k}"] = float((hit / r).mean())
    out["mrr"] = float((1 / r).mean())
    out["n_events"] = len(r)
    return out


def loop_ranks(
    score_rows: np.ndarray, item_matrix: np.ndarray, true_items: np.ndarray
) -> np.ndarray:
    """The slow path for benchmarks (how the authors' evaluation works): one Python iteration
    per event, scoring and ranking its items one row at a time. Same tie rule as above."""
    ranks = np.empty(len(true_items))
    for row, (user, true) in enumerate(zip(score_rows, true_items, strict=True)):
        scores = item_matrix @ user
        target = scores[true]
        greater = int((scores > target).sum())
        ranks[row] = greater + (int((scores == target).sum()) - 1) / 2 + 1
    return ranks


def heapq_ranks(
    score_rows: np.ndarray,
    item_matrix: np.ndarray,
    true_items: np.ndarray,
    candidates: np.ndarray | None = None,
    max_k: int = 50,
) -> np.ndarray:
    """The authors' evaluation, for benchmarks: one matrix product for the batch, then per event
    a Python dict {item: score} over the candidates and heapq.nlargest(max_k) of it. The true
    item's place in that list is its rank; outside it the rank is inf, so metrics at K <= max_k
    are exact. Ties keep dict order (lower item index first), not the half/half rule above."""
    scores = np.asarray(score_rows) @ np.asarray(item_matrix).T
    pool = (range(scores.shape[1]) if candidates is None
            else np.flatnonzero(np.asarray(candidates)).tolist())
    ranks = np.full(len(true_items), np.inf)
    for row, (rating, true) in enumerate(zip(scores, np.asarray(true_items).tolist(),
                                             strict=True)):
        item_score = {item: rating[item] for item in pool}
        top = heapq.nlargest(max_k, item_score, key=item_score.get)
        if true in top:
            ranks[row] = top.index(true) + 1
    return ranks


def brute_force_ranks(
    scores: np.ndarray, true_items: np.ndarray, candidates: np.ndarray | None = None
) -> np.ndarray:
    """Reference for tests: rank by enumerating every tie-breaking order's best and worst case.
    The expected rank under random tie-breaking is the mean of the best and the worst."""
    ranks = []
    for row, true in zip(scores, true_items, strict=True):
        competitors = [
            s for j, s in enumerate(row)
            if j != true and (candidates is None or candidates[j])
        ]
        best = 1 + sum(1 for s in competitors if s > row[true])
        worst = 1 + sum(1 for s in competitors if s >= row[true])
        ranks.append((best + worst) / 2)
    return np.array(ranks, dtype=np.float64)


def brute_force_metrics(ranks: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> dict:
    """Reference for tests: the metric definitions written out one event at a time."""
    out = {}
    for k in ks:
        hits = [1.0 if r <= k else 0.0 for r in ranks]
        out[f"recall@{k}"] = out[f"hit@{k}"] = sum(hits) / len(ranks)
        out[f"ndcg@{k}"] = sum(
            1 / np.log2(r + 1) if r <= k else 0.0 for r in ranks) / len(ranks)
        out[f"mrr@{k}"] = sum(1 / r if r <= k else 0.0 for r in ranks) / len(ranks)
    out["mrr"] = sum(1 / r for r in ranks) / len(ranks)
    out["n_events"] = len(ranks)
    return out
