"""No leakage: what a batch scores may depend only on events (and profile snapshots) from
strictly before the batch start. Changing everything at or after that point — the batch's own
items included — must leave the batch's scores bit for bit unchanged."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models.data.events import EventLog, time_batches
from models.data.neighbors import NeighborFinder
from models.data.profile_index import ProfileIndex
from models.evaluation.baselines import PopularityScorer, RepeatScorer
from models.network.dynllm import DynLLM
from models.training.stream import run_batches
from tests.models.conftest import SMALL, synthetic_log, synthetic_profiles


def _perturbed(log: EventLog, rows: np.ndarray, seed: int = 1,
               users_too: bool = False) -> EventLog:
    """Same times (so the same batches); other items, and with `users_too` other users, at
    `rows`."""
    rng = np.random.default_rng(seed)
    items, users = log.item_idx.copy(), log.user_idx.copy()
    items[rows] = rng.integers(0, log.n_items, len(rows))
    if users_too:
        users[rows] = rng.integers(0, log.n_users, len(rows))
    return log.with_events(users, items, log.ts)


def _with_late_snapshots(profiles: ProfileIndex, after: float) -> ProfileIndex:
    """Every snapshot dated at or after `after` gets other vectors, and every user one more
    snapshot dated exactly at `after`."""
    users = np.unique(profiles.user_idx)
    vectors = profiles.vectors.clone()
    late = torch.as_tensor(profiles.as_of >= after)
    vectors[late] = torch.randn(int(late.sum()), *vectors.shape[1:])
    extra = torch.randn(len(users), *vectors.shape[1:])
    return ProfileIndex(
        np.concatenate((profiles.user_idx, users)),
        np.concatenate((profiles.as_of, np.full(len(users), int(np.ceil(after))))),
        torch.cat((vectors, extra)))


class _LeakyFinder(NeighborFinder):
    """A deliberately wrong finder that also answers with edges up to a day after the cut: the
    defect the test below must catch."""

    def find(self, nodes, cut_times, k):
        return super().find(nodes, np.asarray(cut_times) + 86_400.0, k)


BATCH_SIZE, BATCH = 150, 6


def _scored_batch(model, log, profiles, finder_class=NeighborFinder):
    """Batch BATCH as the real loop scores it (after replaying the batches before it): the
    ranks of its true items (see `candidates`), its user rows, and the messages it leaves for
    its users (the embedding of each user's true items, as scored: the item side exactly)."""
    batches = time_batches(log, range(len(log)), BATCH_SIZE)[: BATCH + 1]
    seen = {}
    # Besides the full ranking, one protocol per item c where only c competes with the true
    # item: its rank (1, 1.5 or 2) says whether c scores below, level with or above the true
    # item, so together they expose each row's whole order relative to its true item.
    candidates = {"full": None, **{f"only {c}": torch.arange(log.n_items) == c
                                   for c in range(log.n_items)}}
    memory = model.new_memory()
    with torch.no_grad():
        out = run_batches(model, memory, finder_class(log), log, batches, profiles,
                          candidates=candidates,
                          on_batch=lambda view: seen.update(users=view.user_embeddings))
    first = batches[BATCH].start - batches[0].start
    messages = memory.pending["user"]
    return ({name: ranks[first:] for name, ranks in out.ranks.items()}, seen["users"],
            dict(zip(messages.ids.tolist(), messages.inputs, strict=True)))


def _same(a, b, kept: np.ndarray, kept_users: np.ndarray) -> bool:
    """Equal user rows, ranks of the kept rows and messages to the kept users, bit for bit."""
    (ranks_a, users_a, messages_a), (ranks_b, users_b, messages_b) = a, b
    return (torch.equal(users_a, users_b)
            and all(torch.equal(ranks_a[n][kept], ranks_b[n][kept]) for n in ranks_a)
            and all(torch.equal(messages_a[u], messages_b[u]) for u in kept_users.tolist()))


@pytest.mark.parametrize("no_profiles", [False, True])
def test_dynllm_batch_scores_ignore_the_future(no_profiles):
    """Through the real loop (models.training.stream.run_batches) with the repeat term and item
    text on: give the events of half of batch BATCH's users other items, change every later
    event and the vectors of every profile snapshot dated from the batch start on. The batch's
    user rows, the ranks of its other events and what it leaves in memory for their users must
    stay bit for bit the same."""
    log = synthetic_log(seed=3, n_events=1500)
    profiles = synthetic_profiles(log)
    item_text = torch.randn(log.n_items, 10, generator=torch.Generator().manual_seed(0))
    cfg = replace(SMALL.ablation("no_profiles") if no_profiles else SMALL, repeat_term=True)
    torch.manual_seed(0)
    model = DynLLM(cfg, log.n_users, log.n_items, item_text=item_text, profile_dim=profiles.dim)
    # Train briefly so that no weight is still at a degenerate initial value.
    run_batches(model, model.new_memory(), NeighborFinder(log),
                log, time_batches(log, range(0, 600), 150), profiles,
                optimizer=torch.optim.Adam(model.param_groups(1e-2)),
                rng=np.random.default_rng(0))
    assert model.repeat.weight.abs().min() > 0  # the repeat term takes part in the scores
    batch = time_batches(log, range(len(log)), BATCH_SIZE)[BATCH]
    batch_users = log.user_idx[batch.start:batch.stop]
    kept_users = np.unique(batch_users)[::2]
    kept = np.isin(batch_users, kept_users)
    assert 0 < kept.sum() < len(kept)
    touched = np.arange(batch.start, batch.stop)[~kept]
    later = _perturbed(_perturbed(log, touched), np.arange(batch.stop, len(log)), seed=5,
                       users_too=True)
    assert (time_batches(later, range(len(later)), BATCH_SIZE)
            == time_batches(log, range(len(log)), BATCH_SIZE))
    late = _with_late_snapshots(profiles, log.ts[batch.start])

    assert _same(_scored_batch(model, log, profiles), _scored_batch(model, later, late),
                 kept, kept_users)
    # The check has teeth: a finder that sees past the cut makes it fail ...
    assert not _same(_scored_batch(model, log, profiles, _LeakyFinder),
                     _scored_batch(model, later, late, _LeakyFinder), kept, kept_users)
    # ... and so does a change strictly before the batch start (the previous batch's items).
    previous = time_batches(log, range(len(log)), BATCH_SIZE)[BATCH - 1]
    earlier = _perturbed(log, np.arange(previous.start, previous.stop), seed=2)
    ranks, users, _ = _scored_batch(model, log, profiles)
    ranks_earlier, users_earlier, _ = _scored_batch(model, earlier, profiles)
    assert not torch.equal(users, users_earlier)
    assert not torch.equal(ranks["full"][kept], ranks_earlier["full"][kept])


def test_baselines_ignore_the_future():
    log = synthetic_log(seed=4, n_events=800)
    start = 500
    while log.ts[start - 1] == log.ts[start]:
        start += 1
    other = _perturbed(log, np.arange(start, len(log)), users_too=True)
    users, times = log.user_idx[start:start + 50], log.ts[start:start + 50]
    for make in (PopularityScorer, RepeatScorer):
        a = make(log).scores(users, times, start, float(log.ts[start]))
        b = make(other).scores(users, times, start, float(log.ts[start]))
        assert torch.equal(a, b), make.__name__
