"""Slow reference paths of the graph network, kept out of the production modules: the tests use
them as oracles and bench/train.py as "the authors' way" to measure against.

- `LoopNeighborFinder`: a Python list per node and a loop over the queried nodes, each bisecting
  its own time-sorted list (how the TGAT-style finder of the authors' code works); a drop-in for
  models.data.neighbors.NeighborFinder.
- `one_query_per_event()`: DynLLM embeds every (node, time) query of a batch as asked, one per
  event, instead of once per distinct query (how the authors' code works).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from models.data.events import EventLog
from models.data.neighbors import NeighborFinder, Neighbors
from models.network.dynllm import DynLLM
from models.network.memory import NodeMemory


class LoopNeighborFinder:
    """Same answers as NeighborFinder (ties in time ordered by event index), one node at a time."""

    def __init__(self, log: EventLog):
        self.n_users = log.n_users
        self.n_nodes = log.n_users + log.n_items
        self._adj: list[list[tuple[float, int, int]]] = [[] for _ in range(self.n_nodes)]
        for e, (u, i, t) in enumerate(zip(log.user_idx, log.item_idx, log.ts, strict=True)):
            item_node = int(i) + log.n_users
            self._adj[int(u)].append((float(t), e, item_node))
            self._adj[item_node].append((float(t), e, int(u)))
        for edges in self._adj:
            edges.sort(key=lambda edge: (edge[0], edge[1]))
        self._times = [[edge[0] for edge in edges] for edges in self._adj]

    def find(self, nodes: np.ndarray, cut_times: np.ndarray, k: int) -> Neighbors:
        nodes = np.asarray(nodes, dtype=np.int64)
        cut_times = np.broadcast_to(np.asarray(cut_times, dtype=np.float64), nodes.shape)
        out_nodes = np.zeros((len(nodes), k), dtype=np.int64)
        out_times = np.zeros((len(nodes), k))
        out_events = np.full((len(nodes), k), -1, dtype=np.int64)
        mask = np.zeros((len(nodes), k), dtype=bool)
        for row, (node, cut) in enumerate(zip(nodes.tolist(), cut_times.tolist(), strict=True)):
            end = bisect.bisect_left(self._times[node], cut)  # edges [0, end) are before cut
            for col in range(min(k, end)):
                t, e, nbr = self._adj[node][end - 1 - col]
                out_nodes[row, col], out_times[row, col] = nbr, t
                out_events[row, col], mask[row, col] = e, True
        return Neighbors(out_nodes, out_times, out_events, mask)


def _graph_embed_per_event(
    self: DynLLM, memory: NodeMemory, finder: NeighborFinder, nodes: np.ndarray,
    ref_times: np.ndarray, cut_times: np.ndarray, layers: int, k: int,
) -> torch.Tensor:
    """DynLLM._graph_embed without sharing equal queries: every row is computed on its own."""
    if layers == 0:
        return self._node_features(memory, nodes)
    return self._graph_embed_distinct(memory, finder, nodes, ref_times, cut_times, layers, k)


@contextmanager
def one_query_per_event() -> Iterator[None]:
    """Every DynLLM, for the duration, embeds one query per event (recursively: the neighbours'
    own embeddings too)."""
    shared = DynLLM._graph_embed
    DynLLM._graph_embed = _graph_embed_per_event
    try:
        yield
    finally:
        DynLLM._graph_embed = shared
