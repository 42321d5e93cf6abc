"""Replay over the whole timeline: recommendations, facet weights and the memory trace."""

from __future__ import annotations

import numpy as np
import torch

from models.data.events import time_batches
from models.network.dynllm import DynLLM
from models.training.replay import replay
from tests.models.conftest import SMALL, synthetic_log, synthetic_profiles


def test_replay_outputs():
    log = synthetic_log(n_events=900)
    profiles = synthetic_profiles(log)
    torch.manual_seed(0)
    model = DynLLM(SMALL, log.n_users, log.n_items, profile_dim=profiles.dim)
    result = replay(model, log, profiles, batch_size=100, k=10, exclude_seen=True)
    recs = result.recommendations
    assert recs.items.shape == (log.n_users, 10) and (np.diff(recs.scores, axis=1) <= 0).all()
    for user in range(log.n_users):
        bought = set(log.item_idx[log.user_idx == user].tolist())
        assert not bought & set(recs.items[user].tolist())

    # One weight row per (user, time) whose user had a snapshot before the batch start; a user
    # with no profile yet has nothing to weigh and no row.
    fw = result.facet_weights
    batches = time_batches(log, range(len(log)), 100)
    expected_pairs = {
        (u, t) for b in batches
        for u, t in zip(log.user_idx[b.start:b.stop].tolist(), log.ts[b.start:b.stop].tolist(),
                        strict=True)
        if profiles.rows(np.array([u]), np.array([log.ts[b.start]]))[0] >= 0}
    assert 0 < len(expected_pairs) < len(set(zip(log.user_idx.tolist(), log.ts.tolist(),
                                                 strict=True)))
    assert set(zip(fw.users.tolist(), fw.ts.tolist(), strict=True)) == expected_pairs
    assert fw.weights.shape == (len(expected_pairs), 4)
    np.testing.assert_allclose(fw.weights.sum(1), 1.0, rtol=1e-5)

    trace = result.memory_trace
    expected = sum(len(np.unique(log.user_idx[b.start:b.stop])) for b in batches)
    assert len(trace.users) == expected and trace.xy.shape == (expected, 2)
    first = np.unique(trace.users, return_index=True)[1]
    assert (trace.drift[first] == 0).all() and (trace.norm > 0).all()
    # Each update is stamped with the user's latest event in the batch that produced it.
    for user, ts in zip(trace.users[:20], trace.ts[:20], strict=True):
        assert ts in log.ts[log.user_idx == user]


def test_replay_without_profiles_has_no_facet_weights():
    log = synthetic_log(n_events=300)
    model = DynLLM(SMALL.ablation("no_profiles"), log.n_users, log.n_items)
    result = replay(model, log, batch_size=100, k=5)
    assert result.facet_weights is None and result.recommendations.items.shape == (60, 5)


def test_replay_ranks_three_lists_from_one_ranking():
    """"buy-again" and "discover" are the full ranking split by whether the user bought the
    item before: checked against the "all" list over every item (k = n_items)."""
    log = synthetic_log(n_events=900, n_items=80)
    torch.manual_seed(0)
    model = DynLLM(SMALL.ablation("no_profiles"), log.n_users, log.n_items)
    full = replay(model, log, batch_size=100, k=log.n_items)
    short = replay(model, log, batch_size=100, k=10)
    assert set(full.lists) == {"all", "buy-again", "discover"}
    assert full.recommendations is full.lists["all"] and full.at > log.ts[-1]
    ranking = full.lists["all"].items
    assert (ranking >= 0).all()  # every item ranked
    for user in range(log.n_users):
        bought = set(log.item_idx[log.user_idx == user].tolist())
        order = ranking[user].tolist()
        again, discover = (full.lists[name].items[user] for name in ("buy-again", "discover"))
        assert again[again >= 0].tolist() == [i for i in order if i in bought]
        assert discover[discover >= 0].tolist() == [i for i in order if i not in bought]
        # A list shorter than k ends with -1 and -inf, never with an item of the other kind.
        assert (again[len(bought):] == -1).all() and (discover[80 - len(bought):] == -1).all()
        assert full.lists["buy-again"].lengths()[user] == len(bought)
        assert full.lists["all"].bought[user].tolist() == [i in bought for i in order]
        assert full.lists["buy-again"].bought[user].tolist() == [
            n < len(bought) for n in range(80)]
        assert not full.lists["discover"].bought[user].any()
        for name in ("all", "buy-again", "discover"):  # k cuts the same lists short
            cut = short.lists[name]
            np.testing.assert_array_equal(cut.items[user], full.lists[name].items[user][:10])
            np.testing.assert_allclose(cut.scores[user], full.lists[name].scores[user][:10],
                                       rtol=1e-5)
    assert np.isneginf(full.lists["buy-again"].scores[full.lists["buy-again"].items < 0]).all()


def test_seen_blocks_match_the_log_at_any_block_boundary():
    from models.training.replay import _seen_block, seen_pairs

    log = synthetic_log(n_events=700)
    at = float(log.ts[400])  # only what happened before `at` counts as bought
    dense = np.zeros((log.n_users, log.n_items), bool)
    before = log.ts < at
    dense[log.user_idx[before], log.item_idx[before]] = True
    keys = seen_pairs(log, at)
    for lo, hi in ((0, 7), (7, 33), (33, 60), (59, 60), (0, 60)):
        np.testing.assert_array_equal(_seen_block(keys, log.n_items, lo, hi).numpy(),
                                      dense[lo:hi])
