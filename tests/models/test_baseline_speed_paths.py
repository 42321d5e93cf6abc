"""The fast paths of the baselines give exactly what the direct computation gives, on the real
demo slice (29,790 Online Retail lines, invoices as baskets): scoring a batch's distinct
(user, time) queries once, each user's rows from the per-user event index, the item-item
similarity computed in blocks, and a k taken from a longer neighbour list."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from models.data.events import EventLog, Split, chronological_split, time_batches
from models.evaluation import baselines
from models.evaluation.baselines import (
    GPTopFreqScorer,
    ItemKNNScorer,
    RepeatScorer,
    TIFUKNNScorer,
    UserEvents,
    item_similarity,
    user_item_matrix,
)
from models.evaluation.metrics import protocol_ranks
from models.evaluation.protocols import (
    batch_protocols,
    distinct_query_scores,
    evaluate_scorer,
    part_metrics,
    standard_protocols,
)
from storage.workspace import Workspace


@pytest.fixture(scope="module")
def demo(demo_workspace_file) -> tuple[EventLog, Split]:
    from dynllm_tui.jobs.workspace_data import load_workspace_data

    with Workspace.open(demo_workspace_file, create=False) as ws:
        log = load_workspace_data(ws, use_profiles=False).log
    assert log.group is not None  # invoices: TIFU-KNN's baskets
    return log, chronological_split(log)


def _per_event_metrics(scorer, log: EventLog, split: Split, batch_size: int) -> dict:
    """The evaluation without the distinct-query step: every event scored as its own row."""
    protocols = standard_protocols(log, split)
    ranks = {name: [] for name in protocols}
    for events in time_batches(log, split.test, batch_size):
        scores = scorer.scores(log.user_idx[events.start:events.stop],
                               log.ts[events.start:events.stop], events.start,
                               float(log.ts[events.start]))
        true = torch.as_tensor(log.item_idx[events.start:events.stop])
        for name, r in protocol_ranks(scores.clone(), true,
                                      batch_protocols(protocols, events)).items():
            ranks[name].append(r)
    return part_metrics({n: torch.cat(r) for n, r in ranks.items()}, log, split.test)


def test_distinct_queries_are_fewer_and_give_the_same_metrics(demo):
    log, split = demo
    events = next(iter(time_batches(log, split.test, 512)))
    scorer = GPTopFreqScorer(log)
    scores, row_of = distinct_query_scores(scorer, log, events)
    assert len(scores) < len(events) / 4  # baskets: many lines, one query
    direct = scorer.scores(log.user_idx[events.start:events.stop],
                           log.ts[events.start:events.stop], events.start,
                           float(log.ts[events.start]))
    assert torch.equal(scores[row_of], direct)
    for make in (GPTopFreqScorer, RepeatScorer,
                 lambda lg: TIFUKNNScorer(lg, neighbours=20),
                 lambda lg: ItemKNNScorer(lg, range(0, split.test.start), neighbours=30)):
        s = make(log)
        fast = evaluate_scorer(s, log, split, batch_size=512)
        slow = _per_event_metrics(s, log, split, 512)
        assert fast == slow, s.name


def test_user_events_matrix_equals_the_whole_matrix_rows(demo):
    log, split = demo
    index = UserEvents(log)
    rng = np.random.default_rng(0)
    for cut in (0, 1, split.val.start, split.test.start + 17, len(log)):
        users = rng.choice(log.n_users, 40, replace=False)
        for binary in (False, True):
            fast = index.matrix(users, cut, binary=binary)
            whole = user_item_matrix(log, 0, cut, binary=binary)[users]
            assert (fast != whole).nnz == 0 and fast.shape == whole.shape


def _dense_top_k(log: EventLog, known: range, k: int) -> np.ndarray:
    """Brute force: dense cosine of 0/1 columns, diagonal out, each row's k largest positive
    entries (ties by item index)."""
    x = user_item_matrix(log, known.start, known.stop, binary=True).toarray()
    norms = np.sqrt(x.sum(0))
    norms[norms == 0] = 1.0
    inverse = 1 / norms  # the same operations, in the same order, as the sparse path
    sim = (inverse[:, None] * (x.T @ x)) * inverse[None, :]
    np.fill_diagonal(sim, 0.0)
    out = np.zeros_like(sim)
    for r in range(len(sim)):
        positive = np.flatnonzero(sim[r] > 0)
        keep = positive[np.argsort(-sim[r, positive], kind="stable")[:k]]
        out[r, keep] = sim[r, keep]
    return out


def test_blocked_similarity_equals_the_dense_one(demo, monkeypatch):
    log, split = demo
    known = range(0, split.val.start)
    expected = _dense_top_k(log, known, 25)
    monkeypatch.setattr(baselines, "SIMILARITY_BLOCK", 97)  # many blocks, a ragged last one
    blocked = item_similarity(log, known, 25)
    assert isinstance(blocked, sp.csr_matrix) and blocked.shape == expected.shape
    np.testing.assert_allclose(blocked.toarray(), expected, rtol=1e-12, atol=0)
    # A k taken from a longer list equals the k computed directly.
    longer = item_similarity(log, known, 60)
    from_longer = ItemKNNScorer(log, known, neighbours=25, similarity=longer).similarity
    assert (from_longer != blocked).nnz == 0


def test_tifu_alphas_scored_in_one_pass_equal_each_alone(demo):
    from models.evaluation.protocols import evaluate_scorers

    log, split = demo
    setting = {"group_size": 3, "r_b": 0.9, "r_g": 0.7, "neighbours": 40}
    first = TIFUKNNScorer(log, alpha=0.7, **setting)
    second = first.with_alpha(0.9)
    assert second.name.endswith("alpha=0.9)") and first.alpha == 0.7
    together = evaluate_scorers([first, second], log, split, batch_size=400, part=split.val)
    alone = [evaluate_scorer(TIFUKNNScorer(log, alpha=a, **setting), log, split,
                             batch_size=400, part=split.val) for a in (0.7, 0.9)]
    assert together == alone
    assert together[0]["full"]["recall@20"] != together[1]["full"]["recall@20"]
