"""Small synthetic logs for the model tests (the real Online Retail data is for end-to-end
tests elsewhere): each user keeps buying from a small personal set of items, so there is
something learnable, with many same-second baskets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data.events import EventLog
from models.data.profile_index import ProfileIndex
from models.network.dynllm import DynLLMConfig
from models.vocabulary import FACETS


def synthetic_log(seed: int = 0, n_events: int = 3000, n_users: int = 60,
                  n_items: int = 80) -> EventLog:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n_events)
    items = (users * 7 + rng.integers(0, 4, n_events)) % n_items
    # Baskets: runs of 1-3 events share one timestamp.
    ts = np.cumsum(rng.integers(0, 2, n_events) * rng.integers(60, 3600, n_events)) + 1.3e9
    return EventLog.from_arrays(users, items, ts.astype(float), n_users, n_items)


def synthetic_profiles(log: EventLog, dim: int = 12, seed: int = 0) -> ProfileIndex:
    """Two snapshots per user: one in the first third of the timeline, one in the second."""
    rng = np.random.default_rng(seed)
    t0, t1 = log.ts[0], log.ts[-1]
    users = np.repeat(np.arange(log.n_users), 2)
    as_of = np.tile([t0 + (t1 - t0) / 3, t0 + 2 * (t1 - t0) / 3], log.n_users).astype(np.int64)
    return ProfileIndex(users, as_of, torch.as_tensor(
        rng.normal(size=(len(users), len(FACETS), dim)), dtype=torch.float32))


# Small dimensions keep every test well under a second per epoch on two cores.
SMALL = DynLLMConfig(dim=16, time_dim=8, top_k=8, dropout=0.0)


@pytest.fixture(autouse=True, scope="package")
def _one_torch_thread():
    """These models are tiny: extra threads only add synchronisation, and on a busy two-core
    machine spinning threads make a 0.1 s run take 10 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def log() -> EventLog:
    return synthetic_log()
