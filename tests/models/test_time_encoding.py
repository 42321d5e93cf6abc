"""Cosine time encoding, hand-computed."""

from __future__ import annotations

import math

import numpy as np
import torch

from models.network.time_encoding import TimeEncoding, basis_frequencies


def test_basis_is_geometric_from_1_to_1e_minus_9():
    w = basis_frequencies(4)
    np.testing.assert_allclose(w, [1.0, 1e-3, 1e-6, 1e-9])


def test_values_hand_computed():
    enc = TimeEncoding(4, learnable=False)
    out = enc(torch.tensor([[0.0, 2.0]]))
    assert out.shape == (1, 2, 4)
    np.testing.assert_allclose(out[0, 0].numpy(), [1, 1, 1, 1])
    expected = [math.cos(2.0), math.cos(2e-3), math.cos(2e-6), math.cos(2e-9)]
    np.testing.assert_allclose(out[0, 1].numpy(), expected, rtol=1e-6)


def test_learnable_parameters_receive_gradients():
    enc = TimeEncoding(8)
    enc(torch.tensor([3.0, 7.0])).sum().backward()
    assert enc.freq.grad is not None and enc.phase.grad is not None
