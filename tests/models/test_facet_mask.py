"""Absent facets are absent: a facet with no source gets exactly zero weight and its vector
cannot move the user's embedding; a user with no facet at all reports no weights."""

from __future__ import annotations

import numpy as np
import torch

from models.data.neighbors import NeighborFinder
from models.data.profile_index import ProfileIndex
from models.network.dynllm import DynLLM
from models.network.facets import FacetAttention
from models.network.memory import NodeMemory
from models.vocabulary import FACETS
from tests.models.conftest import SMALL, synthetic_log


def test_a_masked_facet_receives_exactly_zero_weight():
    torch.manual_seed(0)
    attention = FacetAttention(8, 2, dropout=0.0)
    user, facets = torch.randn(4, 8), torch.randn(4, 3, 8)
    present = torch.tensor([[True, True, True], [True, False, True], [False, False, True],
                            [False, False, False]])
    _, weights = attention(user, facets, present)
    assert torch.all(weights[~present] == 0.0)  # exact zeros, not small numbers
    torch.testing.assert_close(weights[:3].sum(dim=1), torch.ones(3))
    assert weights[2, 2] == 1.0  # the one facet present takes all the weight
    assert torch.all(weights[3] == 0.0)  # nothing to weigh


def test_an_absent_facets_vector_cannot_change_the_output():
    torch.manual_seed(1)
    attention = FacetAttention(8, 2, dropout=0.0).eval()
    user, facets = torch.randn(2, 8), torch.randn(2, 3, 8)
    present = torch.tensor([[True, False, True], [True, True, True]])
    out, _ = attention(user, facets, present)
    changed = facets.clone()
    changed[0, 1] += 100.0
    out_changed, _ = attention(user, changed, present)
    torch.testing.assert_close(out_changed[0], out[0])  # padded: ignored
    assert not torch.allclose(attention(user, changed, torch.ones(2, 3, dtype=torch.bool))[0][0],
                              out[0])  # the same change does matter when the facet is present


def test_a_user_with_no_facet_is_finite_and_uses_the_no_profile_vectors():
    torch.manual_seed(2)
    attention = FacetAttention(8, 2, dropout=0.0)
    out, weights = attention(torch.randn(1, 8), torch.randn(1, 3, 8),
                             torch.zeros(1, 3, dtype=torch.bool))
    assert torch.isfinite(out).all() and torch.all(weights == 0.0)


def test_the_network_gives_an_absent_brand_facet_no_weight():
    """The Online Retail case: every snapshot has brands absent (no brand in the catalogue)."""
    torch.manual_seed(3)
    log = synthetic_log(n_events=400, n_users=10, n_items=20)
    users = np.arange(log.n_users)
    as_of = np.full(log.n_users, int(log.ts[0]) + 1, np.int64)
    present = torch.ones(log.n_users, len(FACETS), dtype=torch.bool)
    present[:, FACETS.index("brands")] = False
    profiles = ProfileIndex(users, as_of, torch.randn(log.n_users, len(FACETS), 6),
                            facet_mask=present)
    model = DynLLM(SMALL, log.n_users, log.n_items, profile_dim=6).eval()
    memory = NodeMemory(log.n_users, log.n_items, SMALL.dim)
    finder = NeighborFinder(log)
    at = float(log.ts[-1]) + 1
    facets, mask = profiles.lookup(users, np.full(len(users), at))
    with torch.no_grad():
        out = model.user_embeddings(memory, finder, users, np.full(len(users), at), at, facets,
                                    mask)
    weights = out.facet_weights
    assert torch.all(weights[:, FACETS.index("brands")] == 0.0)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(len(users)))
