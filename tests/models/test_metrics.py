"""Full-ranking metrics with ties against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.evaluation.metrics import (
    brute_force_metrics,
    brute_force_ranks,
    heapq_ranks,
    loop_ranks,
    metrics_from_ranks,
    protocol_ranks,
    protocol_ranks_in_chunks,
    ranks_in_chunks,
    true_item_ranks,
)


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
