"""Full-ranking metrics: every event's true item is ranked against all items (or, for the paper's
protocol, against a candidate set), in chunks on whatever device the scores live on.

Ties: an item tied with the true item is counted as half above and half below it, i.e.

    rank = #(items scoring strictly higher) + (#(items scoring equal, true item excluded)) / 2 + 1

which is the expected rank under random tie-breaking. A model that gives every item the same
score therefore gets rank (n+1)/2, not 1 (optimistic) or n (pessimistic). The metrics are then
taken of that (possibly fractional) rank: Hit@K = Recall@K = [rank <= K], NDCG@K =
[rank <= K] / log2(rank + 1), MRR@K = [rank <= K] / rank, and MRR = 1 / rank over all items.
With one positive per event Recall@K equals Hit@K; both are reported because readers expect both.

Buy again vs discover: `split_metrics` gives the same metrics on the events whose item the user
bought before ("repeat:recall@10", ...) and on the others ("explore:..."), with their shares; a
part without events gets None ("n/a" in reports). Per-event candidate sets (the exclude-seen
protocol) are `RowExclusions`: items removed from one row's competition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

DEFAULT_KS = (10, 20, 50)
REPEAT, EXPLORE = "repeat", "explore"


@dataclass(frozen=True)
class RowExclusions:
    """Items left out of each row's competition: row b excludes items[b, j] where mask[b, j]
    (padding elsewhere). The true item is never left out, even when listed."""

    items: torch.Tensor  # int64 [B, m]
    mask: torch.Tensor  # bool [B, m]

    def rows(self, lo: int, hi: int) -> RowExclusions:
        return RowExclusions(self.items[lo:hi], self.mask[lo:hi])


Candidates = torch.Tensor | RowExclusions | None


def protocol_ranks(
    scores: torch.Tensor,
    true_items: torch.Tensor,
    protocols: dict[str, Candidates],
    *,
    overwrite: bool = False,
) -> dict[str, torch.Tensor]:
    """Rank (1 = best, fractional under ties) of true_items[b] in scores[b, :] under each
    protocol: {name: None (all items), bool [n_items] candidates, or RowExclusions (per-row
    items left out)}; the true item always competes. With `overwrite` the caller's `scores`
    buffer is reused (and destroyed).

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
        elif isinstance(candidates, RowExclusions):
            # All items minus each row's excluded ones; the true item's sign is 0, so leaving
            # it in the sum changes nothing, but it must stay among the competitors.
            idx = candidates.items.to(signs.device)
            keep = candidates.mask.to(signs.device) & (idx != true_items.view(-1, 1))
            excluded = (signs.gather(1, idx) * keep.to(signs.dtype)).sum(1).double()
            total = signs.sum(1).double() - excluded
            n_competing = signs.shape[1] - keep.sum(1).double()
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
    protocols: dict[str, Candidates],
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
        for name, r in rank_chunk(scores, lo, true_items, protocols, adjust).items():
            parts[name].append(r)
    return {name: torch.cat(p) if p else torch.zeros(0, dtype=torch.float64)
            for name, p in parts.items()}


def rank_chunk(
    scores: torch.Tensor,
    lo: int,
    true_items: torch.Tensor,
    protocols: dict[str, Candidates],
    adjust: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """The ranks of the events lo .. lo + len(scores) under each protocol, from their score
    rows: `adjust(scores, lo)` first (it may work in place), each protocol's exclusions cut to
    those rows. The one step every chunked ranking shares."""
    hi = lo + len(scores)
    if adjust is not None:
        scores = adjust(scores, lo)
    part = {name: c.rows(lo, hi) if isinstance(c, RowExclusions) else c
            for name, c in protocols.items()}
    return protocol_ranks(scores, true_items[lo:hi], part, overwrite=True)


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


def split_metrics(
    ranks: np.ndarray | torch.Tensor,
    is_repeat: np.ndarray,
    ks: Iterable[int] = DEFAULT_KS,
    *,
    explore_only: bool = False,
) -> dict:
    """Metrics over all events plus "repeat:<metric>" and "explore:<metric>" over the events
    whose item the user bought before (is_repeat) and the others, with "repeat_share",
    "n_repeat" and "n_explore". A part without events gets None for each metric.

    `explore_only` (the exclude-seen protocol, where a repeat event's item is by definition
    not a candidate) drops the repeat events from every figure and counts them as
    "n_excluded_repeat"; the repeat columns are then None."""
    ks = tuple(ks)
    r = np.asarray(ranks, dtype=np.float64)
    rep = np.asarray(is_repeat, dtype=bool)
    if len(r) != len(rep):
        raise ValueError(f"{len(r)} ranks but {len(rep)} repeat flags")
    empty = {key: None for key in metrics_from_ranks(np.ones(1), ks)}

    def of(part: np.ndarray) -> dict:
        return metrics_from_ranks(part, ks) if len(part) else {**empty, "n_events": 0}

    overall = of(r[~rep]) if explore_only else of(r)
    out = dict(overall)
    n_repeat = int(rep.sum())
    repeat_part = {**empty, "n_events": 0} if explore_only else of(r[rep])
    for prefix, part in ((REPEAT, repeat_part), (EXPLORE, of(r[~rep]))):
        for key, value in part.items():
            if key != "n_events":
                out[f"{prefix}:{key}"] = value
    out["n_repeat"] = n_repeat
    out["n_explore"] = len(r) - n_repeat
    out["repeat_share"] = n_repeat / len(r) if len(r) else None
    if explore_only:
        out["n_excluded_repeat"] = n_repeat
    return out
