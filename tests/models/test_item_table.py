"""The fast evaluation path against the one it replaces, on a real 20k-line Online Retail
slice: every item's embedding from ItemTable (models/network/item_table.py) and the scores it
gives, batch by batch over validation and test, within 1e-5 of DynLLM.item_embeddings; the
ranking of shared user rows (models/training/stream.py) equal to protocol_ranks_in_chunks; and
whole evaluation streams both ways with the same metrics. Profiles off and on (synthetic facet
vectors on the real log; the repeat term on with them, so its per-event adjustment is covered).
"""

from __future__ import annotations

import copy
import csv
import gzip
from datetime import datetime

import numpy as np
import pytest
import torch

from models.data.events import EventLog, chronological_split, time_batches
from models.data.neighbors import NeighborFinder
from models.evaluation.metrics import metrics_from_ranks, protocol_ranks_in_chunks
from models.evaluation.protocols import batch_protocols, standard_protocols
from models.network.dynllm import DynLLM, DynLLMConfig
from models.network.item_table import ItemTable
from models.training.stream import ranks_of_shared_rows, run_batches, shared_rows
from tests.conftest import ONLINE_RETAIL
from tests.models.conftest import synthetic_profiles
from tests.models.reference_attention import previous_paths

SLICE_ROWS = 20_000
BATCH = 512


@pytest.fixture(scope="module")
def real_log() -> EventLog:
    """The first 20k lines of the real Online Retail file (lines without a customer dropped)."""
    if not ONLINE_RETAIL.exists():
        pytest.fail(f"real data missing: {ONLINE_RETAIL}")
    users, items, times = [], [], []
    with gzip.open(ONLINE_RETAIL, "rt", encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.DictReader(f)):
            if n >= SLICE_ROWS:
                break
            if row["CustomerID"]:
                users.append(row["CustomerID"])
                items.append(row["StockCode"])
                times.append(datetime.fromisoformat(row["InvoiceDate"]).timestamp())
    _, user_idx = np.unique(users, return_inverse=True)
    _, item_idx = np.unique(items, return_inverse=True)
    return EventLog.from_arrays(user_idx, item_idx, np.array(times))


def _trained(log: EventLog, profiles_on: bool):
    """A model after one pass over the training part, and its memory."""
    torch.manual_seed(0)
    split = chronological_split(log)
    profiles = synthetic_profiles(log, dim=24) if profiles_on else None
    config = DynLLMConfig(dim=64, time_dim=32, top_k=40, no_profiles=not profiles_on,
                          repeat_term=profiles_on)
    model = DynLLM(config, log.n_users, log.n_items, torch.randn(log.n_items, 48),
                   24 if profiles_on else None)
    memory, finder = model.new_memory(), NeighborFinder(log)
    run_batches(model, memory, finder, log, time_batches(log, split.train, BATCH), profiles,
                optimizer=torch.optim.Adam(model.param_groups(1e-2)),
                rng=np.random.default_rng(0))
    return model.eval(), memory, finder, split, profiles


@pytest.mark.parametrize("profiles_on", [False, True])
def test_item_table_gives_the_same_items_and_scores_batch_by_batch(real_log, profiles_on):
    model, memory, finder, split, profiles = _trained(real_log, profiles_on)
    table = ItemTable(model)
    all_items = np.arange(real_log.n_items)
    worst_item, worst_score, n_batches = 0.0, 0.0, 0
    with torch.no_grad():
        for events in time_batches(real_log, range(split.val.start, len(real_log)), BATCH):
            users = real_log.user_idx[events.start:events.stop]
            items = real_log.item_idx[events.start:events.stop]
            times = real_log.ts[events.start:events.stop]
            cut = float(times[0])
            model.begin_batch(memory)
            reference = model.item_embeddings(memory, finder, all_items, cut)
            fast = table.embeddings(memory, finder, cut)
            facets, mask = (None, None) if profiles is None else profiles.lookup(
                users, np.full(len(users), cut))
            rows = model.user_embeddings(memory, finder, users, times, cut, facets,
                                         mask).embedding
            worst_item = max(worst_item, float((fast - reference).abs().max()))
            worst_score = max(worst_score, float((rows @ fast.T - rows @ reference.T)
                                                 .abs().max()))
            model.end_batch(memory, users, items, times, rows, reference[items])
            n_batches += 1
    assert n_batches >= 8
    assert worst_item <= 1e-5
    assert worst_score <= 1e-5


def test_shared_rows_rank_exactly_like_every_row(real_log):
    model, memory, finder, split, _ = _trained(real_log, profiles_on=True)
    protocols = standard_protocols(real_log, split)
    events = time_batches(real_log, split.test, 2048)[0]
    users = real_log.user_idx[events.start:events.stop]
    times = real_log.ts[events.start:events.stop]
    true = torch.as_tensor(real_log.item_idx[events.start:events.stop])
    cut = float(times[0])
    with torch.no_grad():
        model.begin_batch(memory)
        out = model.user_embeddings(memory, finder, users, times, cut,
                                    *synthetic_profiles(real_log, dim=24).lookup(
                                        users, np.full(len(users), cut)))
        items = model.item_embeddings(memory, finder, np.arange(real_log.n_items), cut)
    same_as = shared_rows(users, times)
    assert len(np.unique(same_as)) < len(users) / 2  # baskets: far fewer rows than events
    # Rows of one (user, time) are equal, so their scores may be computed once.
    assert torch.equal(out.embedding, out.embedding[torch.as_tensor(same_as)])
    for adjust in (None, out.repeat.add_to):
        for chosen in ({"full": None}, batch_protocols(protocols, events)):
            every = protocol_ranks_in_chunks(out.embedding, items, true, chosen, 300, adjust)
            shared = ranks_of_shared_rows(out.embedding, same_as, items, true, chosen, 300,
                                          adjust)
            for name in chosen:
                assert torch.equal(every[name], shared[name]), name


@pytest.mark.parametrize("profiles_on", [False, True])
def test_evaluation_streams_give_the_same_metrics(real_log, profiles_on):
    model, memory, finder, split, profiles = _trained(real_log, profiles_on)
    batches = time_batches(real_log, range(split.val.start, len(real_log)), BATCH)
    protocols = standard_protocols(real_log, split)
    fast = run_batches(model, copy.deepcopy(memory), finder, real_log, batches, profiles,
                       candidates=protocols)
    with previous_paths():  # nn.MultiheadAttention, all items re-embedded, every row scored
        before = run_batches(model, copy.deepcopy(memory), finder, real_log, batches, profiles,
                             candidates=protocols)
    results = [fast, before]
    for name in protocols:
        fast, reference = (r.ranks[name].numpy() for r in results)
        # Scores agree to 1e-5 (above); a rank may move only where two items are that close.
        assert np.mean(fast != reference) < 0.002, name
        for key, value in metrics_from_ranks(reference).items():
            assert metrics_from_ranks(fast)[key] == pytest.approx(value, abs=1e-3), (name, key)


def test_item_table_refuses_a_model_in_training_mode(real_log):
    model = DynLLM(DynLLMConfig(dim=16, time_dim=8, top_k=8, no_profiles=True),
                   real_log.n_users, real_log.n_items)
    with pytest.raises(ValueError, match="eval mode"):
        ItemTable(model.train())
