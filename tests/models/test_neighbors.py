"""The vectorised temporal neighbour finder against the per-node loop reference
(tests/reference_graph.py)."""

from __future__ import annotations

import numpy as np
import pytest

from models.data.events import EventLog
from models.data.neighbors import NeighborFinder
from tests.reference_graph import LoopNeighborFinder


def _random_log(rng, n_events, n_users, n_items, n_times) -> EventLog:
    return EventLog.from_arrays(
        rng.integers(0, n_users, n_events), rng.integers(0, n_items, n_events),
        rng.integers(0, n_times, n_events).astype(float), n_users=n_users, n_items=n_items,
    )


def _same(a, b):
    np.testing.assert_array_equal(a.mask, b.mask)
    for name in ("nodes", "times", "events"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("seed", range(6))
def test_matches_loop_reference_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    # Few distinct times -> many ties; extra users/items -> nodes without any neighbour.
    log = _random_log(rng, 300, 25, 15, n_times=40)
    fast, slow = NeighborFinder(log), LoopNeighborFinder(log)
    nodes = rng.integers(0, fast.n_nodes, 500)
    cuts = rng.integers(-2, 45, 500).astype(float) + rng.choice([0.0, 0.5], 500)
    for k in (0, 1, 3, 50):  # 50 > every history length
        _same(fast.find(nodes, cuts, k), slow.find(nodes, cuts, k))


def test_hand_computed_case():
    # user 0 buys item 0 at t=1, item 1 at t=2, item 2 at t=2, item 0 at t=5; user 1 item 1 t=3
    log = EventLog.from_arrays([0, 0, 0, 1, 0], [0, 1, 2, 1, 0], [1, 2, 2, 3, 5], 3, 3)
    f = NeighborFinder(log)
    got = f.find(np.array([0, 0, 4, 2]), np.array([5.0, 2.0, 9.0, 9.0]), 3)
    # user 0 before t=5: item 2 (t=2, logged after item 1), item 1 (t=2), item 0 (t=1)
    assert got.nodes[0].tolist() == [3 + 2, 3 + 1, 3 + 0]
    assert got.times[0].tolist() == [2.0, 2.0, 1.0]
    assert got.mask[1].tolist() == [True, False, False]  # strictly before 2: only t=1
    assert got.nodes[2][:2].tolist() == [1, 0] and got.mask[2].tolist() == [True, True, False]
    assert not got.mask[3].any()  # user 2 never bought anything
    assert f.degree_before(np.array([0, 0]), np.array([2.0, 100.0])).tolist() == [1, 4]
    nbrs, times = f.history(0)
    assert nbrs.tolist() == [3, 4, 5, 3] and times.tolist() == [1, 2, 2, 5]


def test_empty_log():
    log = EventLog.from_arrays([], [], [], n_users=2, n_items=2)
    got = NeighborFinder(log).find(np.array([0, 3]), np.array([1.0, 1.0]), 2)
    assert not got.mask.any() and got.nodes.shape == (2, 2)


def test_loop_finder_is_a_drop_in_for_training():
    """The benchmark swaps the finders inside the model: same answers, same losses."""
    import torch

    from models.data.events import time_batches
    from models.network.dynllm import DynLLM
    from models.training.stream import run_batches
    from tests.models.conftest import SMALL, synthetic_log

    log = synthetic_log(n_events=600)
    losses = []
    for finder in (NeighborFinder(log), LoopNeighborFinder(log)):
        torch.manual_seed(0)
        model = DynLLM(SMALL.ablation("no_profiles"), log.n_users, log.n_items)
        out = run_batches(model, model.new_memory(), finder, log,
                          time_batches(log, range(600), 100),
                          optimizer=torch.optim.Adam(model.parameters(), 1e-2),
                          rng=np.random.default_rng(0))
        losses.append(out.losses)
    assert losses[0] == losses[1]
