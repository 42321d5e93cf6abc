"""Which profile snapshot applies at a batch start: the latest one strictly before it."""

from __future__ import annotations

import numpy as np
import torch

from models.data.profile_index import ProfileIndex


def test_latest_snapshot_strictly_before():
    vectors = torch.arange(3 * 4 * 2, dtype=torch.float32).view(3, 4, 2)
    index = ProfileIndex(np.array([0, 0, 1]), np.array([100, 200, 150]), vectors,
                         facet_mask=torch.tensor([[True] * 4, [True] * 4, [True, False] * 2]))
    users = np.array([0, 0, 0, 0, 1, 1, 2])
    times = np.array([99.0, 100.0, 100.5, 250.0, 151.0, 10.0, 999.0])
    assert index.rows(users, times).tolist() == [-1, -1, 0, 1, 2, -1, -1]
    facets, mask = index.lookup(users, times)
    assert facets.shape == (7, 4, 2)
    torch.testing.assert_close(facets[3], vectors[1])
    assert not mask[0].any() and mask[3].all()
    assert mask[4].tolist() == [True, False, True, False]
    assert float(facets[0].abs().sum()) == 0.0  # no snapshot: zeros, and the mask says so


def test_empty_index():
    index = ProfileIndex(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                         torch.zeros(0, 4, 5))
    facets, mask = index.lookup(np.array([0, 1]), np.array([1.0, 2.0]))
    assert facets.shape == (2, 4, 5) and not mask.any()
