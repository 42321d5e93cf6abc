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


def true_item_ranks(
    scores: torch.Tensor, true_items: torch.Tensor, candidates: torch.Tensor | None = None
) -> torch.Tensor:
    """Rank (1 = best, fractional under ties) of true_items[b] in scores[b, :].

    scores: [B, n_items]; true_items: int64 [B]; candidates: optional bool [n_items] — only
    those items compete (the true item always does)."""
    # NaN compares false with everything, which would rank the true item first. A row sum is a
    # cheap reduction that any NaN (or +inf and -inf together) turns into NaN.
    if torch.isnan(scores.sum(1)).any():
        raise ValueError("scores contain NaN; refusing to rank them")
    true_items = true_items.to(scores.device)
    true_scores = scores.gather(1, true_items.view(-1, 1))
    if candidates is None:
        # count_nonzero over a comparison is the cheapest pass torch offers on the CPU; the
        # true item is always among the "greater or equal", so it is taken off the ties.
        n_greater = torch.count_nonzero(scores > true_scores, dim=1)
        n_equal_others = torch.count_nonzero(scores >= true_scores, dim=1) - n_greater - 1
        return n_greater.double() + n_equal_others.double() / 2 + 1
    candidates = candidates.to(scores.device).view(1, -1)
    greater = (scores > true_scores) & candidates
    equal = (scores == true_scores) & candidates
    equal.scatter_(1, true_items.view(-1, 1), False)  # the true item does not tie with itself
    n_greater = torch.count_nonzero(greater, dim=1)
    n_equal_others = torch.count_nonzero(equal, dim=1)
    return n_greater.double() + n_equal_others.double() / 2 + 1


def ranks_in_chunks(
    score_rows: torch.Tensor,
    item_matrix: torch.Tensor,
    true_items: torch.Tensor,
    candidates: torch.Tensor | None = None,
    chunk: int = 1024,
    adjust: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Ranks for dot-product models: scores = score_rows @ item_matrix.T, computed `chunk` rows
    at a time so that [chunk, n_items] is the largest matrix ever held. `adjust(scores, lo)`
    may add a per-row term to the chunk starting at row lo (the repeat term)."""
    out = []
    for lo in range(0, len(score_rows), chunk):
        scores = score_rows[lo : lo + chunk] @ item_matrix.T
        if adjust is not None:
            scores = adjust(scores, lo)
        out.append(true_item_ranks(scores, true_items[lo : lo + chunk], candidates).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


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
