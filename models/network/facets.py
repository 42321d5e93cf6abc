"""The profile side of DynLLM: facet projection, top-k feature distillation and the attention of
the user over the facets, whose weights are the facet relevance weights shown to the analyst."""

from __future__ import annotations

import torch
from torch import nn


class FacetProjection(nn.Module):
    """Linear(d_text -> d) + LayerNorm per facet. A facet the user has no snapshot for yet gets a
    learned "no profile" vector instead of a projection of zeros that would look like data."""

    def __init__(self, n_facets: int, text_dim: int, dim: int, dropout: float):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(text_dim, dim) for _ in range(n_facets))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.no_profile = nn.Parameter(torch.randn(n_facets, dim) * 0.1)

    def forward(self, facets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """facets [B, F, d_text], mask bool [B, F] -> [B, F, d]."""
        projected = torch.stack(
            [lin(facets[:, f]) for f, lin in enumerate(self.linears)], dim=1)
        projected = self.norm(self.dropout(projected))
        return torch.where(mask.unsqueeze(-1), projected, self.no_profile.unsqueeze(0))


class TopKDistill(nn.Module):
    """Learnable feature selector: score = x * w / ||w||; the k highest-scoring features of each
    vector are kept and gated by tanh(score), the rest are zeroed.

    Unlike a gather of the top-k values (which would give vectors whose i-th entry means a
    different feature from row to row), zeroing keeps each feature in its place, so the
    attention that follows compares like with like."""

    def __init__(self, dim: int, k: int):
        super().__init__()
        if not 0 < k <= dim:
            raise ValueError(f"top-k must be in 1..{dim}, got {k}")
        self.k = k
        self.weight = nn.Parameter(torch.randn(dim) / dim**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x * self.weight / self.weight.norm()
        keep = torch.zeros_like(score, dtype=torch.bool)
        keep.scatter_(-1, score.topk(self.k, dim=-1).indices, True)
        return torch.where(keep, x * torch.tanh(score), torch.zeros_like(x))


class FacetAttention(nn.Module):
    """Multi-head attention, the user embedding as query over the facets; returns the attention
    output and the weights over facets (averaged over heads).

    A facet that is absent (no snapshot yet, or a facet with no source such as brands in a
    catalogue without brands) is a padded key: it gets exactly zero weight, so the analyst never
    sees a weight on a facet that says nothing. A user with no facet at all attends over the
    learned "no profile" vectors instead (a row of all-padded keys has no softmax), and reports
    all-zero weights: there is nothing to weigh."""

    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, n_heads, dropout=dropout, batch_first=True)

    def forward(
        self, user: torch.Tensor, facets: torch.Tensor, present: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """user [B, d], facets [B, F, d], present bool [B, F] (None: all present)."""
        if present is None:
            present = torch.ones(facets.shape[:2], dtype=torch.bool, device=facets.device)
        has_any = present.any(dim=1, keepdim=True)
        padding = ~present & has_any  # rows with nothing present attend over every slot
        out, weights = self.attention(user.unsqueeze(1), facets, facets, need_weights=True,
                                      average_attn_weights=True, key_padding_mask=padding)
        weights = weights.squeeze(1) * present  # exact zeros, also after attention dropout
        return out.squeeze(1), weights
