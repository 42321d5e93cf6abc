"""One TGAT layer: a node attends over its k most recent neighbours.

query = [node features ; phi(0)], keys/values = [neighbour features ; phi(t - t_edge)], then a
Linear-ReLU-Linear merge of the attention output with the node's own features.
"""

from __future__ import annotations

import torch
from torch import nn


class TemporalAttentionLayer(nn.Module):
    def __init__(self, dim: int, time_dim: int, n_heads: int, dropout: float):
        super().__init__()
        width = dim + time_dim
        self.attention = nn.MultiheadAttention(width, n_heads, dropout=dropout, batch_first=True)
        self.merge = nn.Sequential(nn.Linear(width + dim, dim), nn.ReLU(), nn.Linear(dim, dim))

    def forward(
        self,
        node: torch.Tensor,  # [B, dim]
        node_time: torch.Tensor,  # [B, time_dim], the encoding of a zero gap
        neighbours: torch.Tensor,  # [B, k, dim]
        neighbour_time: torch.Tensor,  # [B, k, time_dim]
        mask: torch.Tensor,  # bool [B, k], True = real neighbour
    ) -> torch.Tensor:
        query = torch.cat((node, node_time), dim=-1).unsqueeze(1)
        keys = torch.cat((neighbours, neighbour_time), dim=-1)
        lonely = ~mask.any(dim=1)
        # Softmax over no keys is NaN: let lonely nodes attend to one (zero) padding slot and
        # drop that output below, so a node without history keeps only its own features.
        padding = ~mask
        if keys.shape[1]:
            padding = padding.clone()
            padding[lonely, 0] = False
            out, _ = self.attention(query, keys, keys, key_padding_mask=padding,
                                    need_weights=False)
            out = out.squeeze(1) * (~lonely).unsqueeze(1)
        else:
            out = query.new_zeros(query.shape[0], query.shape[2])
        return self.merge(torch.cat((out, node), dim=-1))
