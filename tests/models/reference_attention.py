"""The evaluation and attention paths as they were before issue #14, kept as oracles for the
tests and as the "before" row of bench/train.py:

- `reference_forward`: TemporalAttentionLayer through nn.MultiheadAttention, every key slot
  projected;
- `previous_paths()`: for the duration, that forward, all items re-embedded with
  DynLLM.item_embeddings at every evaluation batch (no ItemTable), and every event's row scored
  against all items (no sharing of equal user rows).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

import models.training.stream as stream
from models.evaluation.metrics import protocol_ranks_in_chunks
from models.network.graph_attention import TemporalAttentionLayer


def reference_forward(layer: TemporalAttentionLayer, node, node_time, neighbours,
                      neighbour_time, mask) -> torch.Tensor:
    """The layer as it was computed before: every key slot through nn.MultiheadAttention."""
    query = torch.cat((node, node_time), dim=-1).unsqueeze(1)
    keys = torch.cat((neighbours, neighbour_time), dim=-1)
    lonely = ~mask.any(dim=1)
    if keys.shape[1]:
        padding = (~mask).clone()
        padding[lonely, 0] = False
        out, _ = layer.attention(query, keys, keys, key_padding_mask=padding,
                                 need_weights=False)
        out = out.squeeze(1) * (~lonely).unsqueeze(1)
    else:
        out = query.new_zeros(query.shape[0], query.shape[2])
    return layer.merge(torch.cat((out, node), dim=-1))


def _every_row(user_rows, same_as, item_matrix, true_items, protocols, chunk=1024,
               adjust=None):
    return protocol_ranks_in_chunks(user_rows, item_matrix, true_items, protocols, chunk, adjust)


@contextmanager
def previous_paths() -> Iterator[None]:
    saved = (TemporalAttentionLayer.forward, stream.item_table_supported,
             stream.ranks_of_shared_rows)
    TemporalAttentionLayer.forward = reference_forward
    stream.item_table_supported = lambda model: False
    stream.ranks_of_shared_rows = _every_row
    try:
        yield
    finally:
        (TemporalAttentionLayer.forward, stream.item_table_supported,
         stream.ranks_of_shared_rows) = saved
