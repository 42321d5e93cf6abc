"""Every item's embedding, batch after batch, for evaluation (validation, test, replay with
ranking): the same numbers as DynLLM.item_embeddings over all items, without redoing per batch
what did not change.

Ranking against all items needs all n_items vectors at every batch start. Recomputed from
scratch (DynLLM.item_embeddings), a batch pays for the item text projection, the temporal
attention over k neighbour slots per item (in-projection of [n, k, dim + time_dim]) and the
merge layers: ~60 GFLOP on Complete Journey's 68k items, ~1.8 s a batch on two cores. With the
weights fixed (eval mode, no dropout) most of it is shared exactly:

- the static part (item text projection) and its node features never change;
- an item's own features (memory + static features) change only where its memory row changed
  (at most the previous batch's items), so everything linear in them is cached per item: the
  query of the attention carried to the key side (TemporalAttentionLayer.query_keys), the
  merge layer's share and the dynamic projection's share;
- what does change every batch is the time encoding of the gaps cut - t_edge (every item with
  a neighbour) and the neighbour users' memory. Since the attention is linear before and after
  its softmax, the logits are z_h . key_j with z_h = W_k,h^T q_h cached per item, and the
  output needs only the attention-weighted sum of the raw keys [memory ; time encoding]
  projected once through the product W_merge,out W_o W_v,h: one [n, heads * width] x
  [width * heads, dim] product instead of the in-projection of every neighbour slot. Items
  without any neighbour before the cut ("lonely") have no attention output at all, and the
  time encoding is computed once per distinct edge time (a basket's lines share one).
Measured on Complete Journey (2 cores): a validation batch from ~1.4 s to ~0.37 s, ranking
included (models/training/stream.py scores each distinct (user, time) row once).

The result equals DynLLM.item_embeddings up to float32 summation order (the products are
re-associated; tests/models/test_item_table.py holds it to 1e-5 on scores). Only the layout the
paper uses is covered (item_layers 0 or 1, any k, any heads); other layouts fall back to
DynLLM.item_embeddings, as does training, where gradients must flow through the usual path.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from models.data.neighbors import NeighborFinder
from models.network.dynllm import DynLLM
from models.network.memory import NodeMemory


def item_table_supported(model: DynLLM) -> bool:
    """Whether ItemTable covers this model's layout (else use DynLLM.item_embeddings)."""
    return model.config.no_neighbours or model.config.item_layers in (0, 1)


class ItemTable:
    """All items' [static ; dynamic] embeddings at successive batch starts, for one stretch of
    evaluation batches with fixed weights. Build it after the last optimizer step and after
    model.eval(); it must not outlive a weight change."""

    def __init__(self, model: DynLLM):
        if model.training:
            raise ValueError("ItemTable needs the model in eval mode (no dropout)")
        if not item_table_supported(model):
            raise ValueError(f"ItemTable covers item_layers 0 or 1, not "
                             f"{model.config.item_layers}")
        cfg = model.config
        self.model = model
        self.device = model.device
        self.n_items = model.n_items
        self.item_nodes = np.arange(model.n_items, dtype=np.int64) + model.n_users
        d = cfg.dim
        # "graph": the 1-layer temporal attention over neighbours; "self": item_layers 0, whose
        # graph part is the node's own features again; "none": no_neighbours.
        self.mode = ("none" if cfg.no_neighbours else "self" if cfg.item_layers == 0
                     else "graph")
        with torch.no_grad():
            self.static = model._item_static(np.arange(model.n_items))
            self.features = model.item_features(self.static)
            weight = model.item_dynamic.weight
            self.dynamic_own = weight[:, :d]
            self.dynamic_graph = weight[:, d:]
            self.dynamic_bias = model.item_dynamic.bias
            if self.mode == "graph":
                self._fold_attention(model)
        self._memory_rows: torch.Tensor | None = None  # item memory rows the cache was built on
        self._dynamic = None  # [n, dim / 2] dynamic_own @ own + bias (+ graph part for "self")
        self._query_keys = None  # [n, heads, width]: z_h, the key-side form of the query
        self._merge_own = None  # [n, dim]: the merge layer's share of the own features + bias

    def _fold_attention(self, model: DynLLM) -> None:
        """The first temporal attention layer as TemporalAttentionLayer folds it (query carried
        to the key side, value path folded into the merge), so that per batch only the softmax
        over each item's slots and one product remain (see the module docstring)."""
        layer = model.gat[0]
        self.layer = layer
        self.k = model.config.item_neighbours
        self.heads, self.width = layer.attention.num_heads, layer.attention.embed_dim
        self.phi_zero = model.time_encoding(torch.zeros(1, device=self.device))
        fold, bias, const = layer.folded()
        # Without dropout the weights of each head sum to 1: the bias terms are constants.
        d = model.config.dim
        self.attended_memory = fold[:, :, :d].flatten(1)
        self.attended_time = fold[:, :, d:].flatten(1)
        self.attended_bias = const + bias.sum(dim=1)
        merge_in = layer.merge[0]
        self.merge_own_weight = merge_in.weight[:, -model.config.dim:]
        self.merge_bias = merge_in.bias
        # Two linear maps in a row (the merge's last layer, then the dynamic projection's graph
        # columns) are one.
        last = layer.merge[2]
        self.graph_weight = self.dynamic_graph @ last.weight
        self.graph_bias = self.dynamic_graph @ last.bias

    def _refresh(self, rows: torch.Tensor) -> None:
        """Recompute the per-item caches where the item memory changed."""
        changed = (rows != self._memory_rows).any(dim=1) if self._memory_rows is not None \
            else torch.ones(len(rows), dtype=torch.bool, device=rows.device)
        index = torch.nonzero(changed).view(-1)
        if self._memory_rows is None:
            self._memory_rows = rows.clone()
            self._dynamic = rows.new_empty(len(rows), self.dynamic_bias.shape[0])
            if self.mode == "graph":
                self._query_keys = rows.new_empty(len(rows), self.heads, self.width)
                self._merge_own = rows.new_empty(len(rows), rows.shape[1])
        if not len(index):
            return
        own = rows[index] + self.features[index]
        self._memory_rows[index] = rows[index]
        dynamic = F.linear(own, self.dynamic_own, self.dynamic_bias)
        if self.mode == "self":
            dynamic = dynamic + F.linear(own, self.dynamic_graph)
        self._dynamic[index] = dynamic
        if self.mode == "graph":
            self._query_keys[index] = self.layer.query_keys(
                torch.cat((own, self.phi_zero.expand(len(own), -1)), dim=-1))
            self._merge_own[index] = F.linear(own, self.merge_own_weight, self.merge_bias)

    @torch.no_grad()
    def embeddings(self, memory: NodeMemory, finder: NeighborFinder,
                   cut_time: float) -> torch.Tensor:
        """[n_items, dim]: what model.item_embeddings(memory, finder, all items, cut_time)
        gives in eval mode."""
        self._refresh(memory.read(self.item_nodes, self.device))
        if self.mode != "graph":
            return torch.cat((self.static, self._dynamic), dim=-1)
        model = self.model
        nb = finder.find(self.item_nodes, np.full(self.n_items, cut_time), self.k)
        # An item's neighbours are users: read each user's memory row once.
        users = memory.read(np.arange(model.n_users), self.device)
        neighbours = users[torch.as_tensor(nb.nodes, device=self.device)]
        # The encoding depends only on the edge time (one cut per batch), and neighbours share
        # edge times (a basket): encode each distinct time once, as float32 gaps like
        # DynLLM._graph_embed does, then spread.
        times, where = np.unique(nb.times, return_inverse=True)
        gaps = torch.as_tensor(cut_time - times, dtype=torch.float32, device=self.device)
        encoded = model.time_encoding(gaps)[torch.as_tensor(where.reshape(-1),
                                                             device=self.device)]
        encoded = encoded.view(*nb.times.shape, -1)
        # The keys are [memory ; encoding]: both halves are used apart, never concatenated.
        d = neighbours.shape[-1]
        z = self._query_keys
        logits = (torch.bmm(z[..., :d], neighbours.transpose(1, 2))
                  + torch.bmm(z[..., d:], encoded.transpose(1, 2)))  # [n, heads, k]
        # Lonely items (no neighbour before the cut) attend to nothing: they softmax over all
        # slots here only to stay finite, and their share is multiplied by 0 below.
        mask = torch.as_tensor(nb.mask, device=self.device)
        lonely = ~mask.any(dim=1)
        logits.masked_fill_(~(mask | lonely.unsqueeze(1)).unsqueeze(1), float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        share = (F.linear(torch.bmm(weights, neighbours).flatten(1), self.attended_memory,
                          self.attended_bias)
                 + F.linear(torch.bmm(weights, encoded).flatten(1), self.attended_time))
        pre = torch.addcmul(self._merge_own, share, (~lonely).unsqueeze(1).to(share.dtype))
        dynamic = self._dynamic + F.linear(F.relu(pre), self.graph_weight, self.graph_bias)
        return torch.cat((self.static, dynamic), dim=-1)
