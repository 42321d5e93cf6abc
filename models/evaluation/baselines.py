"""Baselines on the same split and metrics as DynLLM. Each scores all items for a batch of
(user, time) queries from the events before the batch start only (see evaluation.Scorer)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.data.events import DAY, EventLog
from models.data.neighbors import NeighborFinder

# Tie-breaker weight: small enough never to overturn a real score difference, large enough to
# order items the main score leaves tied (e.g. everything a user never bought) by popularity.
TIE_BREAK = 1e-6


def _counts(log: EventLog, lo: int, hi: int) -> torch.Tensor:
    return torch.as_tensor(np.bincount(log.item_idx[lo:hi], minlength=log.n_items),
                           dtype=torch.float64)


class PopularityScorer:
    """Purchases of each item in the `window_days` before the batch start; all-time purchases
    break ties. The same list for every user."""

    def __init__(self, log: EventLog, window_days: float = 30.0):
        self.name = f"popularity ({window_days:g}d)"
        self.log, self.window = log, window_days * DAY

    def scores(self, users: np.ndarray, times: np.ndarray, cut_index: int,
               cut_time: float) -> torch.Tensor:
        lo = int(np.searchsorted(self.log.ts, cut_time - self.window, side="left"))
        recent = _counts(self.log, lo, cut_index)
        overall = _counts(self.log, 0, cut_index)
        row = recent + TIE_BREAK * overall / max(float(overall.max()), 1.0)
        return row.unsqueeze(0).expand(len(users), -1)


class RepeatScorer:
    """The user's own history: each past purchase of an item adds 2**(-age / half_life), so
    frequent and recent purchases score high (frequency x recency). Items the user never bought
    are ordered by popularity (as a tie-breaker only). Looks at the last `max_history` events."""

    def __init__(self, log: EventLog, half_life_days: float = 30.0, max_history: int = 500):
        self.name = f"repeat history (half-life {half_life_days:g}d)"
        self.log, self.half_life, self.max_history = log, half_life_days * DAY, max_history
        self.finder = NeighborFinder(log)

    def scores(self, users: np.ndarray, times: np.ndarray, cut_index: int,
               cut_time: float) -> torch.Tensor:
        users = np.asarray(users, dtype=np.int64)
        nb = self.finder.find(users, np.full(len(users), cut_time), self.max_history)
        weight = np.where(nb.mask, 2.0 ** (-(cut_time - nb.times) / self.half_life), 0.0)
        items = np.where(nb.mask, nb.nodes - self.log.n_users, 0)
        out = torch.zeros(len(users), self.log.n_items, dtype=torch.float64)
        out.scatter_add_(1, torch.as_tensor(items), torch.as_tensor(weight))
        overall = _counts(self.log, 0, cut_index)
        out += TIE_BREAK * overall / max(float(overall.max()), 1.0)
        return out  # float64: float32 would merge the tie-breaker into the main score


class BPRMF(nn.Module):
    """Matrix factorisation trained with BPR on the events before the test part (training and
    validation), so it never sees a test event. Static: the same scores at every time."""

    def __init__(self, n_users: int, n_items: int, dim: int = 64):
        super().__init__()
        self.name = "BPR-MF"
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, 0.0, 0.1)
        nn.init.normal_(self.item.weight, 0.0, 0.1)

    @classmethod
    def fit(cls, log: EventLog, known: range, *, dim: int = 64, epochs: int = 20,
            lr: float = 5e-3, reg: float = 1e-5, batch_size: int = 4096,
            seed: int = 0) -> BPRMF:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = cls(log.n_users, log.n_items, dim)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        users = torch.as_tensor(log.user_idx[known.start:known.stop])
        items = torch.as_tensor(log.item_idx[known.start:known.stop])
        for _ in range(epochs):
            order = torch.as_tensor(rng.permutation(len(users)))
            for lo in range(0, len(order), batch_size):
                idx = order[lo:lo + batch_size]
                u, i = model.user(users[idx]), model.item(items[idx])
                j = model.item(torch.as_tensor(rng.integers(0, log.n_items, len(idx))))
                loss = -F.logsigmoid((u * i).sum(-1) - (u * j).sum(-1)).mean()
                loss = loss + reg * (u.pow(2).sum(-1) + i.pow(2).sum(-1) + j.pow(2).sum(-1)).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return model.eval()

    @torch.no_grad()
    def scores(self, users: np.ndarray, times: np.ndarray, cut_index: int,
               cut_time: float) -> torch.Tensor:
        return self.user(torch.as_tensor(np.asarray(users, dtype=np.int64))) @ self.item.weight.T
