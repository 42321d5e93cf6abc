"""Reference rankings and metrics for tests: the definitions written out one event at a time,
so the vectorised code in models.evaluation.metrics has something independent to agree with."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DEFAULT_KS = (10, 20, 50)


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
