"""The slow reference rankings the benchmarks race against (moved out of models/, which holds
only what the application runs): a per-event numpy loop, and the authors' per-event dict +
heapq.nlargest ranking. tests/models/test_metrics.py checks them against the fast path."""

from __future__ import annotations

import heapq

import numpy as np


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
