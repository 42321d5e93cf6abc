"""Temporal neighbours of the user-item graph: "the k most recent neighbours of each of these
nodes strictly before time t_i", for a whole batch at once.

Nodes share one id space: users are 0..n_users-1 and items are n_users..n_users+n_items-1, so a
user's neighbours are items and an item's neighbours are users. Each event (u, i, t) is stored
twice (u -> i and i -> u) in flat CSR arrays sorted by (node, time, event index). Ties in time
are ordered by event index, so among same-time edges the later-logged one counts as more recent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data.events import EventLog


@dataclass(frozen=True)
class Neighbors:
    """Answer for a batch of B queries, k columns, column 0 = most recent; padded where a node
    has fewer than k earlier neighbours (mask False, node 0, time 0, event -1)."""

    nodes: np.ndarray  # int64 [B, k] neighbour node ids (unified id space)
    times: np.ndarray  # float64 [B, k] edge timestamps
    events: np.ndarray  # int64 [B, k] event index of the edge in the log
    mask: np.ndarray  # bool [B, k]


class NeighborFinder:
    """Vectorised finder: one searchsorted and one gather per batch, no loop over nodes."""

    def __init__(self, log: EventLog):
        n = len(log)
        self.n_users = log.n_users
        self.n_nodes = log.n_users + log.n_items
        event = np.arange(n, dtype=np.int64)
        src = np.concatenate((log.user_idx, log.item_idx + log.n_users))
        dst = np.concatenate((log.item_idx + log.n_users, log.user_idx))
        times = np.concatenate((log.ts, log.ts))
        events = np.concatenate((event, event))
        # The log is time-sorted, so event index order is time order (ties by log order).
        order = np.lexsort((events, src))
        self._src = src[order]
        self._dst = dst[order]
        self._times = times[order]
        self._events = events[order]
        self._indptr = np.searchsorted(self._src, np.arange(self.n_nodes + 1), side="left")
        # "Strictly before t" inside one node's run, answered for all queries by one global
        # searchsorted: each edge gets the key node * (M + 1) + rank of its time among the M
        # distinct times; a query (node, t) gets node * (M + 1) + #distinct times < t.
        self._unique_times = np.unique(log.ts)
        self._stride = np.int64(len(self._unique_times) + 1)
        rank = np.searchsorted(self._unique_times, self._times, side="left")
        self._keys = self._src * self._stride + rank

    def degree_before(self, nodes: np.ndarray, cut_times: np.ndarray) -> np.ndarray:
        """How many edges each node has strictly before its cut time."""
        nodes = np.asarray(nodes, dtype=np.int64)
        end = self._end(nodes, np.asarray(cut_times, dtype=np.float64))
        return end - self._indptr[nodes]

    def _end(self, nodes: np.ndarray, cut_times: np.ndarray) -> np.ndarray:
        qrank = np.searchsorted(self._unique_times, cut_times, side="left")
        return np.searchsorted(self._keys, nodes * self._stride + qrank, side="left")

    def find(self, nodes: np.ndarray, cut_times: np.ndarray, k: int) -> Neighbors:
        """The k most recent neighbours of nodes[i] strictly before cut_times[i]."""
        nodes = np.asarray(nodes, dtype=np.int64)
        cut_times = np.broadcast_to(np.asarray(cut_times, dtype=np.float64), nodes.shape)
        end = self._end(nodes, cut_times)  # one past the last edge before the cut
        start = self._indptr[nodes]
        pos = end[:, None] - 1 - np.arange(k, dtype=np.int64)[None, :]
        mask = pos >= start[:, None]
        pos = np.where(mask, pos, 0)
        if len(self._dst) == 0:
            mask[:] = False
            empty = np.zeros(pos.shape, dtype=np.int64)
            return Neighbors(empty, np.zeros(pos.shape), empty - 1, mask)
        return Neighbors(
            nodes=np.where(mask, self._dst[pos], 0),
            times=np.where(mask, self._times[pos], 0.0),
            events=np.where(mask, self._events[pos], -1),
            mask=mask,
        )

    def history(self, node: int) -> tuple[np.ndarray, np.ndarray]:
        """All neighbours and edge times of one node, oldest first (for displays and tests)."""
        lo, hi = self._indptr[node], self._indptr[node + 1]
        return self._dst[lo:hi], self._times[lo:hi]

