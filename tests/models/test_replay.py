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
