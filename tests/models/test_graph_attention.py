"""The re-associated temporal attention (models/network/graph_attention.py) against the plain
nn.MultiheadAttention computation it replaces: same outputs and same gradients, to float32
rounding, with lonely nodes, padded slots and k = 0."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from models.network.graph_attention import TemporalAttentionLayer
from tests.models.reference_attention import reference_forward


def _inputs(n: int, k: int, dim: int, time_dim: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, k, generator=gen) > 0.3
    if k:
        mask[: n // 4] = False  # lonely nodes
    return (torch.randn(n, dim, generator=gen), torch.randn(n, time_dim, generator=gen),
            torch.randn(n, k, dim, generator=gen), torch.randn(n, k, time_dim, generator=gen),
            mask)


@pytest.mark.parametrize(("k", "heads"), [(3, 2), (1, 1), (5, 4), (0, 2)])
def test_same_outputs_and_gradients_as_multihead_attention(k, heads):
    torch.manual_seed(1)
    layer = TemporalAttentionLayer(16, 8, heads, dropout=0.1).eval()  # eval: no dropout
    inputs = _inputs(40, k, 16, 8)
    fast = layer(*inputs)
    fast_grads = torch.autograd.grad(fast.square().sum(), list(layer.parameters()),
                                     allow_unused=True)
    slow = reference_forward(layer, *inputs)
    slow_grads = torch.autograd.grad(slow.square().sum(), list(layer.parameters()),
                                     allow_unused=True)
    assert torch.allclose(fast, slow, atol=1e-5, rtol=0)
    for (name, _), a, b in zip(layer.named_parameters(), fast_grads, slow_grads, strict=True):
        a = torch.zeros(1) if a is None else a
        b = torch.zeros(1) if b is None else b
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), name
    # A lonely node keeps only its own features, exactly.
    lonely = ~inputs[4].any(dim=1) if k else torch.ones(40, dtype=torch.bool)
    merge = layer.merge
    own_only = merge[2](F.relu(F.linear(inputs[0], merge[0].weight[:, -16:], merge[0].bias)))
    assert torch.allclose(fast[lonely], own_only[lonely], atol=1e-6)


def test_dropout_acts_on_the_attention_weights_only_in_training():
    torch.manual_seed(2)
    layer = TemporalAttentionLayer(16, 8, 2, dropout=0.5)
    inputs = _inputs(64, 3, 16, 8)
    layer.train()
    a, b = layer(*inputs), layer(*inputs)
    assert not torch.allclose(a, b)  # a fresh mask each call
    assert torch.isfinite(a).all()
    layer.eval()
    assert torch.equal(layer(*inputs), layer(*inputs))


def test_training_follows_the_same_path_as_with_multihead_attention(log):
    """Without dropout (the only random part inside the layer) an epoch of training gives the
    same losses both ways: the re-association changes the cost, not what is learnt."""
    from models.data.events import chronological_split, time_batches
    from models.data.neighbors import NeighborFinder
    from models.network.dynllm import DynLLM
    from models.training.stream import run_batches
    from tests.models.conftest import SMALL
    from tests.models.reference_attention import previous_paths

    split = chronological_split(log)
    losses = []
    for reference in (False, True):
        torch.manual_seed(0)
        model = DynLLM(SMALL.ablation("no_profiles"), log.n_users, log.n_items)
        with previous_paths() if reference else contextlib.nullcontext():
            out = run_batches(model, model.new_memory(), NeighborFinder(log), log,
                              time_batches(log, split.train, 128), None,
                              optimizer=torch.optim.Adam(model.param_groups(1e-2)),
                              rng=np.random.default_rng(0))
        losses.append(np.array(out.losses))
    assert len(losses[0]) > 10
    assert np.allclose(losses[0], losses[1], atol=1e-4, rtol=0)
