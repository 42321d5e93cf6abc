"""The learned profile-text term (models.network.dynllm.TextAffinityTerm): the cosine of an
item's title vector with the user's facet vectors, mixed by one learned weight per facet. It
starts as the paper's model, absent facets add exactly nothing, and training learns it where
the profile text points at what users buy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from models.data.neighbors import NeighborFinder
from models.data.profile_index import ProfileIndex
from models.network.dynllm import DynLLM
from models.network.memory import NodeMemory
from models.vocabulary import FACETS
from tests.models.conftest import SMALL, synthetic_log, synthetic_profiles

TEXT_DIM = 12


def _user_output(model: DynLLM, log, profiles: ProfileIndex):
    users = np.arange(log.n_users)
    at = float(log.ts[-1]) + 1
    facets, mask = profiles.lookup(users, np.full(len(users), at))
    with torch.no_grad():
        out = model.user_embeddings(NodeMemory(log.n_users, log.n_items, SMALL.dim),
                                    NeighborFinder(log), users, np.full(len(users), at), at,
                                    facets, mask)
    return out, facets, mask


def test_the_term_is_the_weighted_cosine_of_present_facets_with_item_titles():
    torch.manual_seed(0)
    log = synthetic_log(n_events=300, n_users=8, n_items=15)
    item_text = torch.randn(log.n_items, TEXT_DIM)
    profiles = synthetic_profiles(log, dim=TEXT_DIM)
    present = torch.ones(len(profiles.as_of), len(FACETS), dtype=torch.bool)
    present[1::4, FACETS.index("brands")] = False  # every other user's latest lacks brands
    profiles = ProfileIndex(profiles.user_idx, profiles.as_of, profiles.vectors, facet_mask=present)
    model = DynLLM(replace(SMALL, text_term=True), log.n_users, log.n_items, item_text,
                   profile_dim=TEXT_DIM).eval()
    weights = torch.tensor([0.5, 2.0, -1.0, 3.0])
    with torch.no_grad():
        model.text_term.weight.copy_(weights)
    out, facets, mask = _user_output(model, log, profiles)
    # Brute force: one user, one item, one facet at a time.
    expected = torch.zeros(log.n_users, log.n_items)
    for u in range(log.n_users):
        for i in range(log.n_items):
            for f in range(len(FACETS)):
                if mask[u, f]:
                    expected[u, i] += weights[f] * F.cosine_similarity(
                        facets[u, f], item_text[i], dim=0)
    torch.testing.assert_close(out.text.add_to(torch.zeros(log.n_users, log.n_items)), expected)
    targets = torch.arange(log.n_users) % log.n_items
    torch.testing.assert_close(out.text.pair_scores(targets),
                               expected[torch.arange(log.n_users), targets])
    # The combined adjuster adds the same, row block by row block.
    block = out.adjust(torch.zeros(3, log.n_items), 2)
    torch.testing.assert_close(block, expected[2:5])
    assert not mask.all()  # the test did cover an absent facet


def test_an_absent_facet_and_a_user_without_profile_add_exactly_nothing():
    torch.manual_seed(1)
    log = synthetic_log(n_events=300, n_users=6, n_items=12)
    item_text = torch.randn(log.n_items, TEXT_DIM)
    users = np.arange(log.n_users)
    as_of = np.full(log.n_users, int(log.ts[0]) + 1, np.int64)
    present = torch.ones(log.n_users, len(FACETS), dtype=torch.bool)
    present[0, :] = False  # a user whose snapshot has no facet at all
    present[1, FACETS.index("interests")] = False
    vectors = torch.randn(log.n_users, len(FACETS), TEXT_DIM)
    model = DynLLM(replace(SMALL, text_term=True), log.n_users, log.n_items, item_text,
                   profile_dim=TEXT_DIM).eval()
    with torch.no_grad():
        model.text_term.weight.fill_(1.0)
    out, _, _ = _user_output(model, log, ProfileIndex(users, as_of, vectors, facet_mask=present))
    changed = vectors.clone()
    changed[1, FACETS.index("interests")] += 50.0  # the absent facet's vector moves
    out_changed, _, _ = _user_output(model, log,
                                     ProfileIndex(users, as_of, changed, facet_mask=present))
    assert torch.all(out.text.user[0] == 0.0)
    torch.testing.assert_close(out_changed.text.user, out.text.user)
    changed[2, FACETS.index("interests")] += 50.0  # a present facet's vector does matter
    moved, _, _ = _user_output(model, log, ProfileIndex(users, as_of, changed, facet_mask=present))
    assert not torch.allclose(moved.text.user[2], out.text.user[2])


def test_the_term_starts_as_the_papers_model_and_learns_at_the_fast_rate():
    log = synthetic_log(n_events=300, n_users=8, n_items=15)
    model = DynLLM(replace(SMALL, text_term=True), log.n_users, log.n_items,
                   torch.randn(log.n_items, TEXT_DIM), profile_dim=TEXT_DIM).eval()
    out, _, _ = _user_output(model, log, synthetic_profiles(log, dim=TEXT_DIM))
    assert torch.all(out.adjust(torch.zeros(2, log.n_items), 0) == 0.0)
    groups = model.param_groups(1e-3)
    assert [g["lr"] for g in groups] == [1e-3, 1e-3 * 30]
    assert groups[1]["params"] == [model.text_term.weight]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_the_term_needs_item_text_of_the_profiles_encoder():
    log = synthetic_log(n_events=300, n_users=8, n_items=15)
    with pytest.raises(ValueError, match="text term needs item text"):
        DynLLM(replace(SMALL, text_term=True), log.n_users, log.n_items,
               torch.randn(log.n_items, TEXT_DIM + 1), profile_dim=TEXT_DIM)
    with pytest.raises(ValueError, match="text term needs item text"):
        DynLLM(replace(SMALL, text_term=True), log.n_users, log.n_items, None,
               profile_dim=TEXT_DIM)
    # Without profiles there is no text to compare: the term is simply not built.
    plain = DynLLM(replace(SMALL, text_term=True, no_profiles=True), log.n_users, log.n_items)
    assert plain.text_term is None


def test_training_learns_a_positive_weight_when_the_profile_points_at_the_purchases(tmp_path):
    """Each user's interests vector is the mean title vector of the items it buys: the term
    starts at 0 and learns to use it; the checkpoint brings it back with the same metrics."""
    from models.training.loop import TrainConfig, evaluate, model_from_checkpoint, train

    torch.manual_seed(0)
    log = synthetic_log(n_events=1500, n_users=30, n_items=60)
    rng = np.random.default_rng(0)
    item_text = torch.as_tensor(rng.normal(size=(log.n_items, TEXT_DIM)), dtype=torch.float32)
    users = np.arange(log.n_users)
    vectors = torch.as_tensor(rng.normal(size=(log.n_users, len(FACETS), TEXT_DIM)),
                              dtype=torch.float32)
    for u in users:
        bought = np.unique(log.item_idx[log.user_idx == u])
        vectors[u, FACETS.index("interests")] = F.normalize(item_text[bought], dim=-1).mean(0)
    profiles = ProfileIndex(users, np.full(log.n_users, int(log.ts[0]) - 1, np.int64), vectors)
    cfg = replace(SMALL, text_term=True)
    result = train(log, item_text, profiles, cfg,
                   TrainConfig(epochs=2, batch_size=100, lr=3e-3, device="cpu"),
                   checkpoint_dir=tmp_path)
    learned = result.model.text_term.weight.detach()
    assert float(learned[FACETS.index("interests")]) > 0.1
    assert float(learned[FACETS.index("interests")]) > float(learned.abs().max()) - 1e-6
    saved_model, memory, _ = model_from_checkpoint(tmp_path / "best.pt", log, item_text,
                                                   profiles)
    assert saved_model.config.text_term
    torch.testing.assert_close(saved_model.text_term.weight, result.model.text_term.weight)
    assert evaluate(saved_model, memory, NeighborFinder(log), log, result.split,
                    batch_size=100, profiles=profiles) == result.test
