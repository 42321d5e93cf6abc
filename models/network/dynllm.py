"""The DynLLM network (Zhao et al. 2024; see docs/ARCHITECTURE.md): memory + temporal graph
attention + time projection for users, LLM profile facets through top-k distillation and
attention, items as [static text part ; dynamic part], dot-product scores and GRU memory
updaters.

The network is stateless between calls: the memory (models/network/memory.py) and the neighbour
finder (models/data/neighbors.py) are passed in, so one set of weights can be replayed over any
timeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models.data.events import DAY
from models.data.neighbors import NeighborFinder
from models.network.facets import FacetAttention, FacetProjection, TopKDistill
from models.network.graph_attention import TemporalAttentionLayer
from models.network.memory import NodeMemory
from models.network.time_encoding import TimeEncoding
from models.vocabulary import ABLATIONS, FACETS


@dataclass(frozen=True)
class DynLLMConfig:
    """Architecture and ablation switches; the defaults are the authors'."""

    dim: int = 128
    time_dim: int = 128
    n_heads: int = 2
    top_k: int = 80
    user_neighbours: int = 3
    item_neighbours: int = 3
    user_layers: int = 2
    item_layers: int = 1
    dropout: float = 0.1
    no_profiles: bool = False
    no_distill: bool = False
    facets: tuple[str, ...] = field(default=FACETS)
    no_time_projection: bool = False
    no_neighbours: bool = False
    message_aggregation: str = "mean"  # "mean" | "last" (see NodeMemory.record)
    # Not in the paper: a learned repeat-purchase term added to the dot product (RepeatTerm).
    repeat_term: bool = False
    repeat_history: int = 200
    # Not in the paper: a learned profile-text affinity added to the score (TextAffinityTerm).
    text_term: bool = False

    def __post_init__(self):
        unknown = set(self.facets) - set(FACETS)
        if unknown or not self.facets:
            raise ValueError(f"facets must be a non-empty subset of {FACETS}, got {self.facets}")
        if self.dim % 2 or self.dim % self.n_heads or (self.dim + self.time_dim) % self.n_heads:
            raise ValueError("dim must be even and dim, dim + time_dim divisible by n_heads")

    def ablation(self, name: str) -> DynLLMConfig:
        """This config with one ablation switched on: a name from ABLATIONS."""
        if name.startswith("facet:"):
            return replace(self, facets=(name.removeprefix("facet:"),))
        if name not in ABLATIONS:
            raise ValueError(f"unknown ablation {name!r}; choose one of {', '.join(ABLATIONS)}")
        return replace(self, **{name: True})


class TimeProjection(nn.Module):
    """JODIE-style projection of a user's memory to the present: m * (1 + W * delta), where
    delta = (normalised time since the last event) - (the gap the memory expects), with separate
    "early" (delta < 0) and "late" (delta >= 0) factors."""

    def __init__(self, dim: int):
        super().__init__()
        self.expected_gap = nn.Linear(dim, 1)
        self.early = nn.Linear(1, dim)
        self.late = nn.Linear(1, dim)
        for lin in (self.early, self.late):
            nn.init.normal_(lin.weight, 0.0, 0.1)
            nn.init.zeros_(lin.bias)

    def forward(self, memory: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        delta = (gap - self.expected_gap(memory).squeeze(-1)).unsqueeze(-1)
        factor = torch.where(delta < 0, self.early(delta), self.late(delta))
        return memory * (1 + factor)


REPEAT_HALF_LIVES_DAYS = (1.0, 7.0, 30.0, 180.0)
REPEAT_LR_FACTOR = 30.0


@dataclass
class RepeatEvidence:
    """What a user's own recent purchases add to each item's score: the last K purchases before
    the batch start, each worth a learned mix of time decays. An item bought twice counts twice."""

    items: torch.Tensor  # long [B, K] item index of each past purchase (0 where padded)
    weights: torch.Tensor  # [B, K] score the purchase adds (0 where padded)

    def pair_scores(self, targets: torch.Tensor) -> torch.Tensor:
        """[B] term for one target item per row."""
        return ((self.items == targets[:, None]) * self.weights).sum(1)

    def add_to(self, scores: torch.Tensor, lo: int = 0) -> torch.Tensor:
        """Adds the term, in place, to scores [b, n_items] of rows lo..lo+b and returns them."""
        hi = lo + len(scores)
        return scores.scatter_add_(1, self.items[lo:hi], self.weights[lo:hi].to(scores.dtype))


class RepeatTerm(nn.Module):
    """Repeat buying (grocery, wholesale) is the strongest signal in retail logs and a dot
    product of two drifting embeddings represents it poorly: the paper's model stays below the
    plain repeat-history baseline. This term scores a past purchase of age a as
    sum_h w_h * 2**(-a / h) over a few half-lives h. The w_h start at 0 (the paper's model) and
    are learned with everything else (at a higher rate, see DynLLM.param_groups). On Online
    Retail they come out negative for 1 and 7 days and positive for 30 and 180: wholesale buyers
    restock an item weeks later, not the next day. A store where nobody rebuys learns w ~ 0."""

    def __init__(self, history: int, n_users: int):
        super().__init__()
        self.history, self.n_users = history, n_users
        self.register_buffer("half_lives",
                             torch.tensor(REPEAT_HALF_LIVES_DAYS, dtype=torch.float64) * DAY)
        self.weight = nn.Parameter(torch.zeros(len(REPEAT_HALF_LIVES_DAYS)))

    def forward(self, finder: NeighborFinder, users: np.ndarray,
                cut_time: float) -> RepeatEvidence:
        nb = finder.find(users, np.full(len(users), cut_time), self.history)
        device = self.weight.device
        age = torch.as_tensor(cut_time - nb.times, device=device)
        decay = torch.exp2(-age[..., None] / self.half_lives).float()  # [B, K, H]
        mask = torch.as_tensor(nb.mask, device=device)
        weights = (decay @ self.weight) * mask
        items = torch.as_tensor(np.where(nb.mask, nb.nodes - self.n_users, 0), device=device)
        return RepeatEvidence(items, weights)


@dataclass
class TextAffinity:
    """What a user's profile text adds to each item's score: the dot product of a learned mix
    of the user's unit facet vectors with the item's unit title vector (one text space)."""

    user: torch.Tensor  # [B, d_text] sum over present facets of w_f * facet_f / |facet_f|
    items: torch.Tensor  # [n_items, d_text] unit item text vectors

    def pair_scores(self, targets: torch.Tensor) -> torch.Tensor:
        """[B] term for one target item per row."""
        return (self.user * self.items[targets]).sum(1)

    def add_to(self, scores: torch.Tensor, lo: int = 0) -> torch.Tensor:
        """Adds the term, in place, to scores [b, n_items] of rows lo..lo+b and returns them."""
        hi = lo + len(scores)
        return scores.addmm_(self.user[lo:hi].to(scores.dtype), self.items.T.to(scores.dtype))


class TextAffinityTerm(nn.Module):
    """Lets a profile reach items the user never bought, where the graph has nothing to say
    (issue #12): the facets and the item titles are embedded by one text encoder, so the cosine
    of an item's title with a user's interests or categories says how well it fits the profile.
    One weight per facet, starting at 0 (the paper's model) and learned with everything else at
    the repeat term's higher rate; absent facets and users without a profile add exactly 0."""

    def __init__(self, item_text: torch.Tensor, n_facets: int):
        super().__init__()
        self.register_buffer("items", F.normalize(item_text.float(), dim=-1), persistent=False)
        self.weight = nn.Parameter(torch.zeros(n_facets))

    def forward(self, facets: torch.Tensor, present: torch.Tensor) -> TextAffinity:
        unit = F.normalize(facets.float(), dim=-1)  # [B, F, d_text]; zero rows stay zero
        mix = self.weight * present.float()  # [B, F]
        return TextAffinity((mix.unsqueeze(-1) * unit).sum(1), self.items)


@dataclass
class UserOutput:
    embedding: torch.Tensor  # [B, dim]
    # [B, n_facets] in config.facets order: rows sum to 1 over the facets the user has; absent
    # facets weigh exactly 0, and a user with no profile yet has an all-zero row
    facet_weights: torch.Tensor | None
    repeat: RepeatEvidence | None = None  # the repeat-purchase term, when the model has one
    text: TextAffinity | None = None  # the profile-text term, when the model has one

    def pair_terms(self, targets: torch.Tensor) -> torch.Tensor | None:
        """[B] what the extra terms (repeat, text) add to each row's score of one target item;
        None for the paper's model."""
        terms = [t.pair_scores(targets) for t in (self.repeat, self.text) if t is not None]
        return None if not terms else terms[0] if len(terms) == 1 else terms[0] + terms[1]

    @property
    def adjust(self) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
        """Adds the extra terms in place to scores [b, n_items] of rows lo..lo+b; None when the
        model has none."""
        terms = [t for t in (self.repeat, self.text) if t is not None]
        if not terms:
            return None

        def add(scores: torch.Tensor, lo: int = 0) -> torch.Tensor:
            for term in terms:
                scores = term.add_to(scores, lo)
            return scores
        return add


class DynLLM(nn.Module):
    def __init__(
        self,
        config: DynLLMConfig,
        n_users: int,
        n_items: int,
        item_text: torch.Tensor | None = None,  # [n_items, d_text] item text embeddings
        profile_dim: int | None = None,  # d_text of the profile facets; None = no profiles
    ):
        super().__init__()
        if not config.no_profiles and profile_dim is None:
            raise ValueError("profiles are on but profile_dim is unknown; use no_profiles=True")
        self.config, self.n_users, self.n_items = config, n_users, n_items
        d, half = config.dim, config.dim // 2
        # Fixed basis (as in GraphMixer): with gaps of ~1e6 s, every Adam step on a learnable
        # frequency moves cos(gap * w) by whole turns, so the encoding would be noise.
        self.time_encoding = TimeEncoding(config.time_dim, learnable=False)
        self.gat = nn.ModuleList(
            TemporalAttentionLayer(d, config.time_dim, config.n_heads, config.dropout)
            for _ in range(max(config.user_layers, config.item_layers)))
        self.time_projection = TimeProjection(d)
        self.projection_norm = nn.LayerNorm(d)
        n_parts = 1 + (not config.no_neighbours) + (not config.no_time_projection)
        self.user_base = nn.Linear(n_parts * d, d)
        if not config.no_profiles:
            self.facet_columns = [FACETS.index(f) for f in config.facets]
            self.facet_projection = FacetProjection(len(config.facets), profile_dim, d,
                                                    config.dropout)
            self.distill = None if config.no_distill else TopKDistill(d, config.top_k)
            self.facet_attention = FacetAttention(d, config.n_heads, config.dropout)
            self.user_merge = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.Linear(d, d))
        # Static item part: from the item text when there is one, else a learned id embedding.
        if item_text is not None:
            self.register_buffer("item_text", item_text.float(), persistent=False)
            self.item_static = nn.Sequential(nn.Linear(item_text.shape[1], half),
                                             nn.LayerNorm(half))
        else:
            self.register_buffer("item_text", None, persistent=False)
            self.item_static = nn.Embedding(n_items, half)
            nn.init.normal_(self.item_static.weight, 0.0, 0.1)
        # Item identity enters the graph too: an item node's features are its memory plus a
        # projection of its static part, so a user's neighbour attention sees *what* it bought.
        self.item_features = nn.Linear(half, d)
        self.item_dynamic = nn.Linear((1 + (not config.no_neighbours)) * d, half)
        self.dropout = nn.Dropout(config.dropout)
        self.user_updater = nn.GRUCell(d + config.time_dim, d)
        self.item_updater = nn.GRUCell(d, d)
        # log1p(gap in seconds) standardised with the training part's statistics.
        self.register_buffer("gap_stats", torch.tensor([0.0, 1.0], dtype=torch.float64))
        self.repeat = RepeatTerm(config.repeat_history, n_users) if config.repeat_term else None
        self.text_term = None
        if config.text_term and not config.no_profiles:
            if item_text is None or item_text.shape[1] != profile_dim:
                raise ValueError("the text term needs item text vectors of the profiles' encoder "
                                 f"(item text {None if item_text is None else item_text.shape[1]}"
                                 f"-d, profile facets {profile_dim}-d)")
            self.text_term = TextAffinityTerm(item_text, len(config.facets))

    def param_groups(self, lr: float) -> list[dict]:
        """Adam groups: the extra terms' few scalars (repeat, text) learn REPEAT_LR_FACTOR times
        faster, so that they find their scale within the first epoch instead of after hundreds
        of steps."""
        terms = [t for t in (self.repeat, self.text_term) if t is not None]
        if not terms:
            return [{"params": list(self.parameters()), "lr": lr}]
        fast_params = [p for t in terms for p in t.parameters()]
        fast = {id(p) for p in fast_params}
        return [{"params": [p for p in self.parameters() if id(p) not in fast], "lr": lr},
                {"params": fast_params, "lr": lr * REPEAT_LR_FACTOR}]

    @property
    def device(self) -> torch.device:
        return self.gap_stats.device

    def set_gap_stats(self, gaps_seconds: np.ndarray) -> None:
        logs = np.log1p(np.asarray(gaps_seconds, dtype=np.float64))
        std = float(logs.std()) if len(logs) > 1 else 1.0
        self.gap_stats.copy_(torch.tensor([float(logs.mean()) if len(logs) else 0.0,
                                           std if std > 0 else 1.0]))

    def new_memory(self, device: str | torch.device = "cpu") -> NodeMemory:
        return NodeMemory(self.n_users, self.n_items, self.config.dim, device,
                          self.config.message_aggregation)

    # --- memory updates -------------------------------------------------------------------
    def begin_batch(self, memory: NodeMemory) -> None:
        """Turn the previous batch's messages into new memory rows (with gradients)."""
        ids, rows = [], []
        for kind, updater in (("user", self.user_updater), ("item", self.item_updater)):
            msgs = memory.pending[kind]
            if msgs is None or not len(msgs.ids):
                continue
            # Normalised so that growing embedding scales cannot saturate the GRUs.
            inputs = F.layer_norm(msgs.inputs.to(self.device), msgs.inputs.shape[1:])
            if kind == "user":
                gaps = torch.as_tensor(msgs.gaps, dtype=torch.float32, device=self.device)
                inputs = torch.cat((inputs, self.time_encoding(gaps)), dim=-1)
            rows.append(updater(inputs, memory.read(msgs.ids, self.device)))
            ids.append(msgs.ids)
        memory.pending = {"user": None, "item": None}
        if ids:
            memory.stage(np.concatenate(ids), torch.cat(rows))

    def end_batch(
        self,
        memory: NodeMemory,
        users: np.ndarray,
        items: np.ndarray,
        times: np.ndarray,
        user_emb: torch.Tensor,
        item_emb: torch.Tensor,
    ) -> None:
        """Persist this batch's fresh rows, then leave its messages for the next batch: a user
        receives the item's embedding (and the gap), an item receives the user's embedding."""
        memory.commit()
        memory.record("user", users, item_emb.detach(), times)
        memory.record("item", items + self.n_users, user_emb.detach(), times)

    # --- embeddings ---------------------------------------------------------------------------
    def _item_static(self, items: np.ndarray) -> torch.Tensor:
        index = torch.as_tensor(items, device=self.device)
        if self.item_text is not None:
            return self.item_static(self.dropout(self.item_text[index]))
        return self.item_static(index)

    def _node_features(self, memory: NodeMemory, nodes: np.ndarray) -> torch.Tensor:
        """Memory rows of nodes (unified ids); item nodes also get their static features."""
        rows = memory.read(nodes, self.device)
        where = np.flatnonzero(nodes >= self.n_users)
        if not len(where):
            return rows
        static = self.item_features(self._item_static(nodes[where] - self.n_users))
        return rows.index_add(0, torch.as_tensor(where, device=self.device), static)

    def _graph_embed(
        self, memory: NodeMemory, finder: NeighborFinder, nodes: np.ndarray,
        ref_times: np.ndarray, cut_times: np.ndarray, layers: int, k: int,
    ) -> torch.Tensor:
        """TGAT embedding of `nodes`: neighbours strictly before cut_times, time gaps measured from
        ref_times. A neighbour's own embedding is taken at its edge time (recursively).

        Equal queries (node, ref time, cut time) have equal answers, and a batch is full of them:
        every line of an invoice asks for the same user at the same time, and the neighbours'
        neighbours repeat too. Each distinct query is computed once and gathered back, which
        keeps gradients exact (the gather sums them) and cuts the attention work by ~10x on
        basket data."""
        if layers == 0:
            return self._node_features(memory, nodes)
        if len(nodes) > 1:
            keys = np.stack((nodes.astype(np.float64), ref_times, cut_times), axis=1)
            _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
            if len(first) < len(nodes):
                distinct = self._graph_embed_distinct(memory, finder, nodes[first],
                                                      ref_times[first], cut_times[first],
                                                      layers, k)
                return distinct[torch.as_tensor(inverse.reshape(-1), device=self.device)]
        return self._graph_embed_distinct(memory, finder, nodes, ref_times, cut_times, layers, k)

    def _graph_embed_distinct(
        self, memory: NodeMemory, finder: NeighborFinder, nodes: np.ndarray,
        ref_times: np.ndarray, cut_times: np.ndarray, layers: int, k: int,
    ) -> torch.Tensor:
        nb = finder.find(nodes, cut_times, k)
        own = self._graph_embed(memory, finder, nodes, ref_times, cut_times, layers - 1, k)
        flat_t = nb.times.reshape(-1)
        theirs = self._graph_embed(memory, finder, nb.nodes.reshape(-1), flat_t, flat_t,
                                   layers - 1, k).view(len(nodes), k, -1)
        gaps = torch.as_tensor(ref_times[:, None] - nb.times, dtype=torch.float32,
                               device=self.device)
        zero = self.time_encoding(torch.zeros(len(nodes), device=self.device))
        mask = torch.as_tensor(nb.mask, device=self.device)
        return self.gat[layers - 1](own, zero, theirs, self.time_encoding(gaps), mask)

    def user_embeddings(
        self,
        memory: NodeMemory,
        finder: NeighborFinder,
        users: np.ndarray,
        times: np.ndarray,
        cut_time: float,
        facets: torch.Tensor | None = None,  # [B, 4, d_text], all four facets in FACETS order
        facet_mask: torch.Tensor | None = None,  # bool [B, 4]
    ) -> UserOutput:
        cfg = self.config
        times = np.asarray(times, dtype=np.float64)
        cuts = np.full(len(users), cut_time)
        mem = memory.read(users, self.device)
        parts = [mem]
        if not cfg.no_neighbours:
            parts.append(self._graph_embed(memory, finder, users, times, cuts, cfg.user_layers,
                                           cfg.user_neighbours))
        if not cfg.no_time_projection:
            gap = np.log1p(memory.gaps(users, times))
            gap = torch.as_tensor((gap - float(self.gap_stats[0])) / float(self.gap_stats[1]),
                                  dtype=torch.float32, device=self.device)
            parts.append(self.projection_norm(self.time_projection(mem, gap)))
        base = self.user_base(self.dropout(torch.cat(parts, dim=-1)))
        repeat = None if self.repeat is None else self.repeat(finder, users, cut_time)
        if cfg.no_profiles:
            return UserOutput(base, None, repeat)
        if facets is None or facet_mask is None:
            raise ValueError("this model uses profiles: pass facets and facet_mask")
        cols = torch.as_tensor(self.facet_columns, device=self.device)
        present = facet_mask.to(self.device)[:, cols]
        projected = self.facet_projection(facets.to(self.device)[:, cols], present)
        if self.distill is not None:
            projected = self.distill(projected)
        attended, weights = self.facet_attention(base, projected, present)
        text = (None if self.text_term is None
                else self.text_term(facets.to(self.device)[:, cols], present))
        return UserOutput(self.user_merge(torch.cat((base, attended), dim=-1)), weights, repeat,
                          text)

    def item_embeddings(
        self, memory: NodeMemory, finder: NeighborFinder, items: np.ndarray, cut_time: float
    ) -> torch.Tensor:
        """[static ; dynamic] embeddings of `items` (item indices) as of the batch start."""
        cfg = self.config
        items = np.asarray(items, dtype=np.int64)
        nodes = items + self.n_users
        static = self._item_static(items)
        parts = [memory.read(nodes, self.device) + self.item_features(static)]
        if not cfg.no_neighbours:
            cuts = np.full(len(items), cut_time)
            parts.append(self._graph_embed(memory, finder, nodes, cuts, cuts, cfg.item_layers,
                                           cfg.item_neighbours))
        dynamic = self.item_dynamic(self.dropout(torch.cat(parts, dim=-1)))
        return torch.cat((static, dynamic), dim=-1)


def bpr_loss(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, reg: float,
             extra: torch.Tensor | None = None) -> torch.Tensor:
    """BPR with one sampled negative per positive, plus reg * mean squared embedding norm.
    `extra` [B] is added to each positive-minus-negative score difference (the repeat term's
    share, which has no embeddings to regularise)."""
    diff = (user * pos).sum(-1) - (user * neg).sum(-1)
    if extra is not None:
        diff = diff + extra
    l2 = (user.pow(2).sum(-1) + pos.pow(2).sum(-1) + neg.pow(2).sum(-1)).mean()
    return -F.logsigmoid(diff).mean() + reg * l2


def sample_negatives(rng: np.random.Generator, positives: np.ndarray, n_items: int) -> np.ndarray:
    """One uniformly drawn item per positive, never the positive itself."""
    if n_items < 2:
        raise ValueError("negative sampling needs at least two items")
    return (positives + rng.integers(1, n_items, len(positives))) % n_items

