"""Network components: distillation, facet attention, ablations, memory messages."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

import numpy as np
import pytest
import torch

from models.data.events import chronological_split, time_batches
from models.data.neighbors import NeighborFinder
from models.network.dynllm import ABLATIONS, DynLLM, DynLLMConfig, RepeatEvidence, RepeatTerm
from models.network.facets import FacetProjection, TopKDistill
from models.network.memory import last_per_node
from models.training.stream import run_batches
from models.vocabulary import FACETS
from tests.models.conftest import SMALL, synthetic_profiles
from tests.reference_graph import one_query_per_event


def test_topk_distill_keeps_k_features_gated_by_tanh():
    torch.manual_seed(0)
    distill = TopKDistill(6, 2)
    x = torch.tensor([[1.0, -2.0, 3.0, 0.5, -1.0, 2.0]])
    with torch.no_grad():
        distill.weight.copy_(torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]))
    out = distill(x)
    score = x / 6**0.5
    expected = torch.zeros_like(x)
    expected[0, [2, 5]] = x[0, [2, 5]] * torch.tanh(score[0, [2, 5]])  # the two largest scores
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError):
        TopKDistill(4, 5)


def test_no_profile_vector_replaces_missing_facets():
    proj = FacetProjection(2, 5, 4, dropout=0.0)
    facets = torch.randn(3, 2, 5)
    mask = torch.tensor([[True, True], [False, False], [True, False]])
    out = proj(facets, mask)
    torch.testing.assert_close(out[1], proj.no_profile)
    torch.testing.assert_close(out[2, 1], proj.no_profile[1])
    assert not torch.allclose(out[0, 0], proj.no_profile[0])


def test_ablation_names():
    base = DynLLMConfig()
    assert base.ablation("no_profiles").no_profiles
    assert base.ablation("facet:brands").facets == ("brands",)
    assert len(ABLATIONS) == 8
    with pytest.raises(ValueError, match="unknown ablation"):
        base.ablation("no_everything")
    with pytest.raises(ValueError, match="facets"):
        DynLLMConfig(facets=("horoscope",))


def test_last_per_node():
    assert last_per_node(np.array([5, 3, 5, 7, 3])).tolist() == [4, 2, 3]  # ids 3, 5, 7


@pytest.mark.parametrize("ablation", [None, *ABLATIONS])
def test_every_variant_trains_and_exposes_facet_weights(log, ablation):
    cfg = SMALL if ablation is None else SMALL.ablation(ablation)
    profiles = synthetic_profiles(log)
    torch.manual_seed(0)
    model = DynLLM(cfg, log.n_users, log.n_items, item_text=torch.randn(log.n_items, 10),
                   profile_dim=profiles.dim)
    memory, finder = model.new_memory(), NeighborFinder(log)
    split = chronological_split(log)
    batches = time_batches(log, range(0, 1500), 200)  # snapshots start near event 1000
    weights, w_users, w_cuts = [], [], []

    def on_batch(view):
        weights.append(view.facet_weights)
        w_users.append(log.user_idx[view.events.start:view.events.stop])
        w_cuts.append(log.ts[view.events.start])  # the batch start: profiles from before it

    before = {k: v.clone() for k, v in model.state_dict().items()}
    run_batches(model, memory, finder, log, batches, profiles,
                optimizer=torch.optim.Adam(model.parameters(), 1e-2),
                rng=np.random.default_rng(0), on_batch=on_batch)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    # The GRU updaters learn although memory is written without gradients (delayed messages).
    assert not torch.equal(before["user_updater.weight_ih"], model.user_updater.weight_ih)
    assert memory.state.abs().sum() > 0 and np.isfinite(memory.last_update).sum() > 0
    if cfg.no_profiles:
        assert all(w is None for w in weights)
    else:
        w = torch.cat(weights)
        assert w.shape[1] == len(cfg.facets)
        # A user with a snapshot before the batch weighs its facets (sum 1); one without has
        # nothing to weigh (all zero).
        sums = w.sum(1)
        has = torch.as_tensor(np.concatenate([
            profiles.rows(users, np.full(len(users), cut)) >= 0
            for users, cut in zip(w_users, w_cuts, strict=True)]))
        assert has.any() and (~has).any()
        torch.testing.assert_close(sums[has], torch.ones(int(has.sum())))
        assert torch.all(w[~has] == 0)
    out = run_batches(model, memory, finder, log, time_batches(log, split.val, 300), profiles,
                      candidates={"full": None})
    assert len(out.ranks["full"]) == len(split.val)


def test_profiles_required_unless_ablated(log):
    with pytest.raises(ValueError, match="profile_dim"):
        DynLLM(SMALL, log.n_users, log.n_items)


@pytest.mark.parametrize("facet", FACETS)
def test_a_one_facet_model_reads_only_its_own_column_of_the_profile(log, facet):
    """Profile tensors carry every facet in FACETS order; `facet:NAME` must read that facet's
    column and no other (a model reading the wrong column would still run)."""
    torch.manual_seed(0)
    model = DynLLM(SMALL.ablation(f"facet:{facet}"), log.n_users, log.n_items,
                   profile_dim=6).eval()
    memory, finder = model.new_memory(), NeighborFinder(log)
    users, times = log.user_idx[:40], log.ts[:40]
    facets = torch.randn(len(users), len(FACETS), 6)
    mask = torch.ones(len(users), len(FACETS), dtype=torch.bool)

    def embed(vectors: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.user_embeddings(memory, finder, users, times, float(times[0]),
                                         vectors, mask).embedding

    before = embed(facets)
    own = FACETS.index(facet)
    for column in range(len(FACETS)):
        changed = facets.clone()
        changed[:, column] += 1.0
        after = embed(changed)
        assert torch.equal(after, before) != (column == own), (facet, column)


class _CountingFinder(NeighborFinder):
    """The real finder, counting the query rows it answers."""

    rows = 0

    def find(self, nodes, cut_times, k):
        self.rows += len(nodes)
        return super().find(nodes, cut_times, k)


def test_shared_repeated_queries_give_the_same_embeddings_and_gradients(log):
    """Computing each distinct (node, time) query once must not change the answer: same user
    and item embeddings, same gradients, as one query per event (the authors' way,
    tests/reference_graph.py)."""
    torch.manual_seed(0)
    model = DynLLM(SMALL.ablation("no_profiles"), log.n_users, log.n_items)
    memory, finder = model.new_memory(), NeighborFinder(log)
    run_batches(model, memory, finder, log, time_batches(log, range(0, 900), 150))
    events = np.arange(900, 1200)
    users, items, times = log.user_idx[events], log.item_idx[events], log.ts[events]
    assert len(np.unique(np.stack((users, times)), axis=1)[0]) < len(events)  # repeats exist
    model.eval()
    results, rows_asked = [], []
    for shared in (True, False):
        counting = _CountingFinder(log)
        model.zero_grad()
        with nullcontext() if shared else one_query_per_event():
            user = model.user_embeddings(memory, counting, users, times,
                                         float(times[0])).embedding
            item = model.item_embeddings(memory, counting, items, float(times[0]))
        (user * item).sum().backward()
        results.append((user.detach(), item.detach(),
                        [p.grad.clone() for p in model.gat.parameters() if p.grad is not None]))
        rows_asked.append(counting.rows)
    # The reference really took the other path: it asked the finder about every repeat.
    assert rows_asked[0] < rows_asked[1]
    (u1, i1, g1), (u2, i2, g2) = results
    torch.testing.assert_close(u1, u2)
    torch.testing.assert_close(i1, i2)
    assert len(g1) == len(g2) > 0
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_basket_reaches_memory_as_the_mean_of_its_lines():
    """Three lines of one basket leave one message: their mean ("mean") or the last ("last"),
    dated at the last line, with the gap since the node's previous update."""
    from models.network.memory import NodeMemory

    inputs = torch.tensor([[1.0, 0.0], [0.0, 3.0], [5.0, 5.0], [2.0, 2.0]])
    ids, times = np.array([4, 4, 7, 4]), np.array([10.0, 10.0, 11.0, 12.0])
    for aggregation, expected in (("mean", [[1.0, 5 / 3], [5.0, 5.0]]),
                                  ("last", [[2.0, 2.0], [5.0, 5.0]])):
        memory = NodeMemory(5, 5, 2, aggregation=aggregation)
        memory.last_update[4] = 4.0
        memory.record("user", ids, inputs, times)
        msgs = memory.pending["user"]
        assert msgs.ids.tolist() == [4, 7]
        torch.testing.assert_close(msgs.inputs, torch.tensor(expected))
        assert msgs.gaps.tolist() == [8.0, 0.0] and memory.last_update[[4, 7]].tolist() == [
            12.0, 11.0]
    with pytest.raises(ValueError, match="aggregation"):
        NodeMemory(1, 1, 2, aggregation="max")


def test_repeat_evidence_adds_the_same_term_to_pairs_and_to_full_rankings():
    """The training pairs and the full ranking must see one and the same repeat term; an item
    bought twice counts twice."""
    gen = torch.Generator().manual_seed(0)
    items = torch.randint(0, 6, (5, 8), generator=gen)
    weights = torch.randn(5, 8, generator=gen)
    evidence = RepeatEvidence(items, weights)
    full = evidence.add_to(torch.zeros(5, 6))
    for target in range(6):
        expected = torch.tensor([float(weights[b][items[b] == target].sum()) for b in range(5)])
        torch.testing.assert_close(evidence.pair_scores(torch.full((5,), target)), expected)
        torch.testing.assert_close(full[:, target], expected)
    torch.testing.assert_close(evidence.add_to(torch.ones(2, 6), lo=3), 1 + full[3:])


def test_repeat_term_decays_with_age_and_sees_only_purchases_before_the_cut():
    from models.data.events import EventLog

    day = 86_400.0
    # user 0 buys item 1 on days 0 and 1 and item 2 on day 10; user 1 buys item 0 on day 10.
    log = EventLog.from_arrays([0, 0, 0, 1], [1, 1, 2, 0], [0.0, day, 10 * day, 10 * day], 2, 3)
    term = RepeatTerm(history=5, n_users=2)
    with torch.no_grad():
        term.weight.copy_(torch.tensor([1.0, 0.0, 0.0, 2.0]))  # half-lives 1 d and 180 d
    evidence = term(NeighborFinder(log), np.array([0, 1]), 10 * day)
    scores = evidence.add_to(torch.zeros(2, 3))

    def worth(age_days: float) -> float:
        return 2.0 ** -age_days + 2 * 2.0 ** (-age_days / 180)

    expected = torch.tensor([[0.0, worth(10) + worth(9), 0.0], [0.0, 0.0, 0.0]])
    torch.testing.assert_close(scores, expected)  # day-10 purchases are at the cut: unseen


def test_the_repeat_term_is_learned_from_zero_on_a_rebuying_log(log, tmp_path):
    """Users of the synthetic log rebuy a few items: the term starts as the paper's model (all
    weights 0) and learns a positive weight, faster than the rest of the network."""
    from models.training.loop import TrainConfig, train

    torch.manual_seed(0)
    cfg = SMALL.ablation("no_profiles")
    model = DynLLM(replace(cfg, repeat_term=True), log.n_users, log.n_items)
    assert not model.repeat.weight.detach().any()
    groups = model.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, 1e-3 * 30]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    result = train(log, None, None, replace(cfg, repeat_term=True),
                   TrainConfig(epochs=2, batch_size=100, lr=3e-3, device="cpu"),
                   checkpoint_dir=tmp_path)
    assert float(result.model.repeat.weight.detach().sum()) > 0.1
    # The checkpoint brings the term back: the same test metrics from the saved model.
    from models.training.loop import evaluate, model_from_checkpoint

    saved_model, memory, _ = model_from_checkpoint(tmp_path / "best.pt", log)
    assert saved_model.config.repeat_term
    assert evaluate(saved_model, memory, NeighborFinder(log), log, result.split,
                    batch_size=100) == result.test
    plain = train(log, None, None, cfg, TrainConfig(epochs=2, batch_size=100, lr=3e-3,
                                                     device="cpu"))
    assert result.test["full"]["recall@10"] > plain.test["full"]["recall@10"]
