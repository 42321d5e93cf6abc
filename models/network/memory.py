"""Per-node memory with TGN-style delayed updates.

Scoring a batch must only use memory from before the batch, and the GRU updaters must still be
trained. So a batch leaves *messages* behind (the counterpart's embedding and the time gap); the
next batch turns them into new memory rows with the GRUs (with gradients, so the loss of that
batch trains the updaters), reads memory through that overlay, and commits the rows afterwards.

The memory table may live on the CPU while the network runs on a GPU: only the rows a batch
needs travel to the device. Absolute times stay float64 numpy (Unix seconds lose minutes of
precision in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Messages:
    """One message per node from a batch, waiting to be applied by the next batch."""

    ids: np.ndarray  # int64 [m] unified node ids, unique
    inputs: torch.Tensor  # float32 [m, msg_dim], detached, on the memory's device
    gaps: np.ndarray  # float64 [m] seconds since the node's previous update (0 for a first one)


def last_per_node(ids: np.ndarray) -> np.ndarray:
    """Positions of the last occurrence of each distinct id (batch rows are in time order)."""
    reversed_first = np.unique(ids[::-1], return_index=True)[1]
    return len(ids) - 1 - reversed_first


AGGREGATIONS = ("mean", "last")


class NodeMemory:
    def __init__(self, n_users: int, n_items: int, dim: int, device: str | torch.device = "cpu",
                 aggregation: str = "mean"):
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.device = torch.device(device)
        self.aggregation = aggregation
        self.reset()

    def reset(self) -> None:
        n = self.n_users + self.n_items
        self.state = torch.zeros(n, self.dim, device=self.device)
        self.last_update = np.full(n, np.nan)  # NaN = never updated
        self.pending: dict[str, Messages | None] = {"user": None, "item": None}
        self._overlay_ids = np.zeros(0, dtype=np.int64)
        self._overlay_rows: torch.Tensor | None = None

    # Overlay: rows computed for this batch, visible to read() until commit().
    def stage(self, ids: np.ndarray, rows: torch.Tensor) -> None:
        order = np.argsort(ids, kind="stable")
        self._overlay_ids = np.asarray(ids, dtype=np.int64)[order]
        self._overlay_rows = rows[torch.as_tensor(order, device=rows.device)]

    def read(self, ids: np.ndarray, device: torch.device) -> torch.Tensor:
        ids = np.asarray(ids, dtype=np.int64)
        rows = self.state[torch.as_tensor(ids, device=self.device)].to(device)
        if self._overlay_rows is None or not len(self._overlay_ids):
            return rows
        pos = np.clip(np.searchsorted(self._overlay_ids, ids), 0, len(self._overlay_ids) - 1)
        hit = torch.as_tensor(self._overlay_ids[pos] == ids, device=device)
        fresh = self._overlay_rows[torch.as_tensor(pos, device=self._overlay_rows.device)]
        return torch.where(hit.view(-1, 1), fresh.to(device), rows)

    def commit(self) -> None:
        if self._overlay_rows is not None and len(self._overlay_ids):
            ids = torch.as_tensor(self._overlay_ids, device=self.device)
            self.state[ids] = self._overlay_rows.detach().to(self.device)
        self._overlay_ids = np.zeros(0, dtype=np.int64)
        self._overlay_rows = None

    def gaps(self, ids: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Seconds since each node's last update (0 where it never was)."""
        gap = np.asarray(times, dtype=np.float64) - self.last_update[ids]
        # Clamped: replaying an earlier stretch over a later memory must not give log1p(<-1).
        return np.clip(np.nan_to_num(gap, nan=0.0), 0.0, None)

    def record(self, kind: str, ids: np.ndarray, inputs: torch.Tensor, times: np.ndarray) -> None:
        """Leave messages for the next batch, one per node, dated at its last event here.

        "mean" (default) averages the node's inputs over the batch: a customer's basket of
        twenty lines reaches the memory as the basket, where "last" (TGN's default) would keep
        one arbitrary line of it."""
        last = last_per_node(ids)  # ordered like np.unique(ids)
        index = torch.as_tensor(last, device=inputs.device)
        if self.aggregation == "mean" and len(last) < len(ids):
            _, inverse = np.unique(ids, return_inverse=True)
            inverse_t = torch.as_tensor(inverse.reshape(-1), device=inputs.device)
            sums = inputs.new_zeros(len(last), inputs.shape[1]).index_add_(0, inverse_t,
                                                                            inputs.detach())
            counts = torch.bincount(inverse_t, minlength=len(last)).clamp_min(1)
            chosen = sums / counts.unsqueeze(1).to(sums.dtype)
        else:
            chosen = inputs[index]
        ids, times = ids[last], times[last]
        self.pending[kind] = Messages(
            ids=ids,
            inputs=chosen.detach().to(self.device),
            gaps=self.gaps(ids, times),
        )
        self.last_update[ids] = times

    def state_dict(self) -> dict:
        pending = {
            kind: None if m is None else {"ids": m.ids, "inputs": m.inputs.cpu(), "gaps": m.gaps}
            for kind, m in self.pending.items()
        }
        return {"state": self.state.cpu(), "last_update": self.last_update.copy(),
                "pending": pending}

    def load_state_dict(self, saved: dict) -> None:
        if tuple(saved["state"].shape) != (self.n_users + self.n_items, self.dim):
            raise ValueError("saved memory does not match this model's users, items or size")
        self.reset()
        self.state = saved["state"].to(self.device).clone()
        self.last_update = np.array(saved["last_update"], dtype=np.float64)
        self.pending = {
            kind: None if m is None else Messages(
                np.asarray(m["ids"]), m["inputs"].to(self.device), np.asarray(m["gaps"]))
            for kind, m in saved["pending"].items()
        }
