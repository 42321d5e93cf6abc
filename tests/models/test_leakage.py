"""No leakage: what a batch scores may depend only on events (and profile snapshots) from
strictly before the batch start. Changing everything at or after that point — the batch's own
items included — must leave the batch's scores bit for bit unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data.events import EventLog, time_batches
from models.data.neighbors import NeighborFinder
from models.data.profile_index import ProfileIndex
from models.evaluation.baselines import PopularityScorer, RepeatScorer
from models.network.dynllm import DynLLM
from models.training.stream import profile_inputs, run_batches
from tests.models.conftest import SMALL, synthetic_log, synthetic_profiles


def _perturbed(log: EventLog, start: int, seed: int = 1) -> EventLog:
    """Same users and times (so the same batches), other items from `start` on."""
    rng = np.random.default_rng(seed)
    items = log.item_idx.copy()
    items[start:] = rng.integers(0, log.n_items, len(log) - start)
    users = log.user_idx.copy()
    return log.with_events(users, items, log.ts)


def _with_late_snapshots(profiles: ProfileIndex, after: float) -> ProfileIndex:
    """Extra snapshots dated at or after the batch start, with different vectors."""
    users = np.unique(profiles.user_idx)
    extra = torch.randn(len(users), *profiles.vectors.shape[1:])
    return ProfileIndex(
        np.concatenate((profiles.user_idx, users)),
        np.concatenate((profiles.as_of, np.full(len(users), int(np.ceil(after))))),
        torch.cat((profiles.vectors, extra)))


def _batch_scores(model, log, profiles, batch_index: int) -> torch.Tensor:
    """Replay memory up to the batch, then score its users against all items."""
    batches = time_batches(log, range(len(log)), 150)
    memory, finder = model.new_memory(), NeighborFinder(log)
    with torch.no_grad():
        run_batches(model, memory, finder, log, batches[:batch_index], profiles)
        b = batches[batch_index]
        users, times = log.user_idx[b.start:b.stop], log.ts[b.start:b.stop]
        model.begin_batch(memory)
        facets, mask = profile_inputs(model, profiles, users, float(times[0]))
        user = model.user_embeddings(memory, finder, users, times, float(times[0]), facets, mask)
        items = model.item_embeddings(memory, finder, np.arange(log.n_items), float(times[0]))
    return user.embedding @ items.T


@pytest.mark.parametrize("no_profiles", [False, True])
def test_dynllm_batch_scores_ignore_the_future(no_profiles):
    log = synthetic_log(seed=3, n_events=1500)
    profiles = synthetic_profiles(log)
    cfg = SMALL.ablation("no_profiles") if no_profiles else SMALL
    torch.manual_seed(0)
    model = DynLLM(cfg, log.n_users, log.n_items, profile_dim=profiles.dim)
    # Train briefly so that no weight is still at a degenerate initial value.
    run_batches(model, model.new_memory(), NeighborFinder(log),
                log, time_batches(log, range(0, 600), 150), profiles,
                optimizer=torch.optim.Adam(model.parameters(), 1e-2), rng=np.random.default_rng(0))
    model.eval()
    batch_index = 6
    start = time_batches(log, range(len(log)), 150)[batch_index].start
    other = _perturbed(log, start)
    assert time_batches(other, range(len(other)), 150) == time_batches(log, range(len(log)), 150)
    late = _with_late_snapshots(profiles, log.ts[start])
    before = _batch_scores(model, log, profiles, batch_index)
    after = _batch_scores(model, other, late, batch_index)
    assert torch.equal(before, after)
    # The check has teeth: perturbing one event *before* the batch start does change scores.
    earlier = _perturbed(log, start - 1, seed=2)
    assert not torch.equal(before, _batch_scores(model, earlier, profiles, batch_index))


def test_baselines_ignore_the_future():
    log = synthetic_log(seed=4, n_events=800)
    start = 500
    while log.ts[start - 1] == log.ts[start]:
        start += 1
    other = _perturbed(log, start)
    users, times = log.user_idx[start:start + 50], log.ts[start:start + 50]
    for make in (PopularityScorer, RepeatScorer):
        a = make(log).scores(users, times, start, float(log.ts[start]))
        b = make(other).scores(users, times, start, float(log.ts[start]))
        assert torch.equal(a, b), make.__name__
