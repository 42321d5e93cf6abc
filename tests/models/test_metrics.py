"""Full-ranking metrics with ties against brute force; repeat/explore splits against hand
counts; the exclude-seen protocol against a brute-force ranking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.reference_ranking import heapq_ranks, loop_ranks
from models.data.events import EventLog, chronological_split
from models.evaluation.metrics import (
    RowExclusions,
    metrics_from_ranks,
    protocol_ranks,
    protocol_ranks_in_chunks,
    ranks_in_chunks,
    split_metrics,
    true_item_ranks,
)
from models.evaluation.protocols import (
    EXCLUDE_SEEN,
    SeenItems,
    dataset_summary,
    default_protocol,
    evaluate_scorer,
    format_report,
    model_report,
    repeat_flags,
    repeat_ratio,
)
from tests.reference_ranking import brute_force_metrics, brute_force_ranks


def test_hand_computed_ties():
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1],   # true 0: 1 above, 2 tied -> 2 + 1 = 3
                           [1.0, 1.0, 1.0, 1.0, 1.0],   # all tied: (5 + 1) / 2 = 3
                           [0.0, 0.1, 0.2, 0.3, 0.4]])  # true 4: best -> 1
    ranks = true_item_ranks(scores, torch.tensor([0, 2, 4]))
    assert ranks.tolist() == [3.0, 3.0, 1.0]
    # Paper protocol: only items 0, 3 and 4 compete.
    cand = torch.tensor([True, False, False, True, True])
    assert true_item_ranks(scores, torch.tensor([0, 3, 4]), cand).tolist() == [1.5, 2.0, 1.0]


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(60, 30)).astype(np.float32)  # heavy ties
    true = rng.integers(0, 30, 60)
    cand = rng.random(30) < 0.5
    cand[true] = True
    for c in (None, cand):
        got = true_item_ranks(torch.tensor(scores), torch.tensor(true),
                              None if c is None else torch.tensor(c))
        np.testing.assert_allclose(got.numpy(), brute_force_ranks(scores, true, c))
    ranks = brute_force_ranks(scores, true)
    fast, slow = metrics_from_ranks(ranks, ks=(1, 5, 10)), brute_force_metrics(ranks, ks=(1, 5, 10))
    assert fast.keys() == slow.keys()
    for key in fast:
        assert fast[key] == pytest.approx(slow[key]), key
    assert fast["recall@5"] == fast["hit@5"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_all_protocols_in_one_pass_match_brute_force(dtype):
    """One sign pass ranks under every protocol at once, also when the true item is not a
    candidate (it still competes) and when the caller's buffer may be overwritten."""
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 5, size=(80, 40)).astype(np.float64)
    true = rng.integers(0, 40, 80)
    cand = rng.random(40) < 0.4  # some true items are left out of the candidates
    assert not cand[true].all()
    protocols = {"full": None, "paper": torch.tensor(cand)}
    buffer = torch.tensor(scores, dtype=dtype)
    got = protocol_ranks(buffer, torch.tensor(true), protocols, overwrite=True)
    with_true = np.repeat(cand[None, :], len(true), axis=0)
    with_true[np.arange(len(true)), true] = True
    expected_paper = [brute_force_ranks(scores[b:b + 1], true[b:b + 1], with_true[b])[0]
                      for b in range(len(true))]
    np.testing.assert_allclose(got["full"].numpy(), brute_force_ranks(scores, true))
    np.testing.assert_allclose(got["paper"].numpy(), expected_paper)
    assert got["full"].dtype == torch.float64
    rows, identity = torch.tensor(scores, dtype=dtype), torch.eye(40, dtype=dtype)
    chunked = protocol_ranks_in_chunks(rows, identity, torch.tensor(true), protocols, chunk=7)
    for name in protocols:
        torch.testing.assert_close(chunked[name], got[name])


def test_chunked_dot_product_ranks():
    torch.manual_seed(0)
    users, items = torch.randn(37, 8), torch.randn(50, 8)
    true = torch.randint(0, 50, (37,))
    full = true_item_ranks(users @ items.T, true)
    torch.testing.assert_close(ranks_in_chunks(users, items, true, chunk=5), full)


def test_hand_computed_metric_values():
    m = metrics_from_ranks(np.array([1.0, 3.0, 20.0]), ks=(10,))
    assert m["recall@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / np.log2(4)) / 3)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 20) / 3)
    assert m["n_events"] == 3


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        true_item_ranks(torch.tensor([[float("nan"), 1.0]]), torch.tensor([1]))


def test_loop_ranks_match_vectorised():
    torch.manual_seed(1)
    users, items = torch.randn(20, 4), torch.randn(30, 4)
    items[5] = items[6]  # a tie
    true = torch.randint(0, 30, (20,))
    np.testing.assert_allclose(loop_ranks(users.numpy(), items.numpy(), true.numpy()),
                               ranks_in_chunks(users, items, true).numpy(), rtol=1e-6)


def test_heapq_ranks_agree_within_top_k_and_mark_the_rest_infinite():
    rng = np.random.default_rng(3)
    users, items = rng.normal(size=(40, 8)), rng.normal(size=(120, 8))
    true = rng.integers(0, 120, 40)
    exact = brute_force_ranks(users @ items.T, true)
    ranks = heapq_ranks(users, items, true, max_k=30)
    inside = exact <= 30
    assert inside.any() and (~inside).any()
    np.testing.assert_array_equal(ranks[inside], exact[inside])  # no ties in random floats
    assert np.isinf(ranks[~inside]).all()
    candidates = np.zeros(120, dtype=bool)
    candidates[true] = True
    restricted = heapq_ranks(users, items, true, candidates, max_k=30)
    expected = brute_force_ranks(users @ items.T, true, candidates)
    np.testing.assert_array_equal(restricted, np.where(expected <= 30, expected, np.inf))


def _hand_log() -> EventLog:
    """user 0: item 1 at t=0, item 2 at t=10, items 1 (again) and 3 at t=20;
    user 1: item 1 twice in one basket at t=5, again at t=30."""
    return EventLog.from_arrays([0, 1, 1, 0, 0, 0, 1], [1, 1, 1, 2, 1, 3, 1],
                                [0, 5, 5, 10, 20, 20, 30], 2, 5)


def test_repeat_flags_and_ratio_by_hand():
    log = _hand_log()
    # A repeat needs a strictly earlier purchase: the second item 1 in user 1's basket is not.
    assert repeat_flags(log, range(0, 7)).tolist() == [False, False, False, False, True, False,
                                                       True]
    assert repeat_flags(log, range(4, 7)).tolist() == [True, False, True]
    assert repeat_ratio(log, range(0, 7)) == pytest.approx(2 / 7)
    assert repeat_ratio(log, range(0, 4)) == 0.0
    seen = SeenItems(log)
    assert seen.before(0, 20).tolist() == [1, 2]
    assert seen.before(1, 5).tolist() == [] and seen.before(1, 5.5).tolist() == [1]


def test_split_metrics_against_hand_counts():
    ranks = np.array([1, 4, 30, 2, 1, 12, 3], dtype=float)
    flags = repeat_flags(_hand_log(), range(0, 7))
    m = split_metrics(ranks, flags, ks=(10,))
    assert m["recall@10"] == pytest.approx(5 / 7)
    assert m["repeat:recall@10"] == pytest.approx(1.0)  # ranks 1 and 3
    assert m["repeat:ndcg@10"] == pytest.approx((1 + 1 / np.log2(4)) / 2)
    assert m["explore:recall@10"] == pytest.approx(3 / 5)  # ranks 1, 4, 30, 2, 12
    assert m["explore:ndcg@10"] == pytest.approx((1 + 1 / np.log2(5) + 1 / np.log2(3)) / 5)
    assert (m["n_repeat"], m["n_explore"], m["repeat_share"]) == (2, 5, pytest.approx(2 / 7))
    only = split_metrics(ranks, flags, ks=(10,), explore_only=True)
    assert only["recall@10"] == pytest.approx(3 / 5) and only["n_events"] == 5
    assert only["repeat:recall@10"] is None and only["n_excluded_repeat"] == 2


def test_no_repeat_events_give_na_repeat_columns():
    m = split_metrics(np.array([1.0, 50.0]), np.array([False, False]), ks=(10, 20))
    assert m["repeat:recall@20"] is None and m["explore:recall@20"] == 0.5
    rows = model_report({"popularity": {"full": m}})
    line = next(x for x in format_report(rows, ("recall@20", "repeat:recall@20")).splitlines()
                if x.startswith("popularity"))
    assert "n/a" in line and "0.5000" in line


def _random_log(seed: int, n: int = 300, n_users: int = 8, n_items: int = 15) -> EventLog:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, n // 3, n)).astype(float)  # many same-time events
    return EventLog.from_arrays(rng.integers(0, n_users, n), rng.integers(0, n_items, n), ts,
                                n_users, n_items)


@pytest.mark.parametrize("seed", range(3))
def test_exclude_seen_matches_brute_force(seed):
    log = _random_log(seed)
    events = range(120, 300)
    rng = np.random.default_rng(seed + 10)
    scores = rng.integers(0, 4, size=(len(events), log.n_items)).astype(np.float64)
    true = log.item_idx[events.start:events.stop]
    expected = []
    for b, i in enumerate(events):
        seen = {int(log.item_idx[j]) for j in range(i)
                if log.user_idx[j] == log.user_idx[i] and log.ts[j] < log.ts[i]}
        cand = np.array([j not in seen or j == true[b] for j in range(log.n_items)])
        expected.append(brute_force_ranks(scores[b:b + 1], true[b:b + 1], cand)[0])
    exclusions = SeenItems(log).for_events(events)
    got = protocol_ranks(torch.tensor(scores), torch.tensor(true), {"x": exclusions})["x"]
    np.testing.assert_allclose(got.numpy(), expected)
    # Chunked rows see the same per-row exclusions.
    chunked = protocol_ranks_in_chunks(torch.tensor(scores), torch.eye(log.n_items,
                                       dtype=torch.float64), torch.tensor(true),
                                       {"x": exclusions}, chunk=7)["x"]
    np.testing.assert_allclose(chunked.numpy(), expected)
    assert isinstance(exclusions.rows(0, 3), RowExclusions)


class _FixedScorer:
    """Item j scores j for everyone: a scorer that ignores history."""

    name = "fixed"

    def __init__(self, n_items: int):
        self.row = torch.arange(n_items, dtype=torch.float64)

    def scores(self, users, times, cut_index, cut_time):
        return self.row.expand(len(users), -1)


def test_evaluate_scorer_reports_repeat_explore_and_exclude_seen():
    log = _random_log(5, n=600, n_items=200)
    split = chronological_split(log)
    out = evaluate_scorer(_FixedScorer(log.n_items), log, split, batch_size=50, ks=(5,))
    flags = repeat_flags(log, split.test)
    assert out["full"]["n_repeat"] == int(flags.sum()) > 0 and (~flags).sum() > 0
    assert out[EXCLUDE_SEEN]["n_events"] == int((~flags).sum())
    assert out[EXCLUDE_SEEN]["repeat:recall@5"] is None
    # Leaving seen items out can only lift an explore event's rank.
    assert out[EXCLUDE_SEEN]["explore:mrr"] >= out["full"]["explore:mrr"]


def test_default_protocol_follows_the_training_repeat_ratio():
    repetitive = _random_log(1)  # 15 items, 8 users: mostly repeats
    split = chronological_split(repetitive)
    assert default_protocol(repetitive, split)[0] == "full"
    n = 300  # every (user, item) pair once: no repeats at all
    users, items = np.arange(n) % 10, np.arange(n) // 10
    once = EventLog.from_arrays(users, items, np.arange(n, dtype=float), 10, 30)
    protocol, reason = default_protocol(once, chronological_split(once))
    assert protocol == EXCLUDE_SEEN and "0.0% is below 5%" in reason
    summary = dataset_summary(once, chronological_split(once))
    text = format_report(model_report({"fixed": {"full": {"recall@10": 0.1}}}, summary))
    assert text.startswith("repeat ratio 0.0% of all events") and "exclude-seen is the" in text
