"""Profile snapshots as tensors, and the vectorised "which snapshot applies at time t" lookup.

A snapshot (user, as_of) holds one text embedding per facet and was made from the user's
interactions strictly before as_of (see models/data/snapshots.py). The model uses, for a batch
starting at t, the latest snapshot with as_of strictly before t: stricter than needed under that
contract, but it stays leak-free even if a snapshot were stamped with the time of its last input
event, and it is what the no-leakage test checks (nothing dated at or after t may matter).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.data.snapshots import latest_snapshot_before
from models.vocabulary import FACETS


@dataclass(frozen=True, eq=False)
class ProfileIndex:
    user_idx: np.ndarray  # int64 [n_snapshots], dense user index
    as_of: np.ndarray  # int64 [n_snapshots], Unix seconds
    vectors: torch.Tensor  # float32 [n_snapshots, n_facets, d_text]
    facet_mask: torch.Tensor | None = None  # bool [n_snapshots, n_facets]: facet present

    def __post_init__(self):
        if not (len(self.user_idx) == len(self.as_of) == len(self.vectors)):
            raise ValueError("user_idx, as_of and vectors must have one row per snapshot")
        if self.vectors.dim() != 3 or self.vectors.shape[1] != len(FACETS):
            raise ValueError(f"vectors must be [n_snapshots, {len(FACETS)}, d_text]")

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[2])

    def rows(self, users: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Row of the latest snapshot with as_of < t for each (user, t), or -1 if there is none."""
        users = np.asarray(users, dtype=np.int64)
        times = np.broadcast_to(np.asarray(times, dtype=np.float64), users.shape)
        # as_of is whole seconds: as_of < t  <=>  as_of <= ceil(t) - 1.
        last_allowed = np.ceil(times).astype(np.int64) - 1
        return latest_snapshot_before(self.user_idx, self.as_of, users, last_allowed)

    def lookup(self, users: np.ndarray, times: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(facets [B, n_facets, d_text], mask [B, n_facets]); mask False = no snapshot yet."""
        rows = torch.as_tensor(self.rows(users, times))
        has = rows >= 0
        safe = rows.clamp(min=0)
        if len(self.vectors) == 0:
            shape = (len(rows), len(FACETS))
            return torch.zeros(*shape, self.dim), torch.zeros(shape, dtype=torch.bool)
        facets = self.vectors[safe] * has.view(-1, 1, 1)
        mask = has.view(-1, 1).expand(-1, len(FACETS))
        if self.facet_mask is not None:
            mask = mask & self.facet_mask[safe]
        return facets, mask.clone()
