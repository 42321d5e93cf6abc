"""Baselines on the same split, batches and metrics as DynLLM. Each scores all items for a batch
of (user, time) queries from the events before the batch start only (see protocols.Scorer);
those with settings learn them from events before the part they are scored on (`known`), and
the settings are chosen on validation (models.evaluation.tuning).

- popularity (recent window) and repeat history (frequency x recency): the simple retail pair;
- BPR-MF: static matrix factorisation, negatives never equal to the positive;
- GP-TopFreq (Li et al., TOIS 2023): the user's own items by purchase frequency, then global
  popularity;
- TIFU-KNN (Hu et al., SIGIR 2020): time-decayed within-basket and across-basket user vectors,
  mixed with the mean of the k nearest users' vectors;
- item-kNN: co-purchase cosine similarity to the user's past items, own items not counted. Chosen
  over UP-CF@r because UP-CF@r is, like TIFU-KNN, a user-neighbourhood method, while item-kNN
  adds the item-neighbourhood view: it can only score by what is bought together, which makes it
  the discovery (explore) reference among the baselines.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
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


def _popularity_tie_break(log: EventLog, cut_index: int) -> torch.Tensor:
    """All-time purchases before the cut, scaled below TIE_BREAK: orders what a score leaves
    tied without ever overturning it."""
    overall = _counts(log, 0, cut_index)
    return TIE_BREAK * overall / max(float(overall.max()), 1.0)


def user_item_matrix(log: EventLog, lo: int, hi: int, binary: bool = False) -> sp.csr_matrix:
    """Purchase counts (or 0/1) of events lo..hi-1 as a sparse [n_users, n_items] matrix."""
    m = sp.csr_matrix((np.ones(hi - lo), (log.user_idx[lo:hi], log.item_idx[lo:hi])),
                      shape=(log.n_users, log.n_items))
    m.sum_duplicates()
    if binary:
        m.data[:] = 1.0
    return m


class UserEvents:
    """Each user's events in time order, so the rows of a few users before a cut are found
    without rebuilding the whole user-item matrix at every batch (at Complete Journey's 1.4M
    events that rebuild was most of a baseline's evaluation)."""

    def __init__(self, log: EventLog):
        self.log = log
        self.order = np.argsort(log.user_idx, kind="stable")  # per user: positions increase
        self.offsets = np.searchsorted(log.user_idx[self.order], np.arange(log.n_users + 1))

    def matrix(self, users: np.ndarray, cut_index: int, binary: bool = False) -> sp.csr_matrix:
        """[len(users), n_items] purchase counts (or 0/1) of each user's events before
        `cut_index`; row b belongs to users[b]."""
        users = np.asarray(users, dtype=np.int64)
        chunks, counts = [], np.zeros(len(users), dtype=np.int64)
        for b, u in enumerate(users):
            positions = self.order[self.offsets[u]:self.offsets[u + 1]]
            positions = positions[:np.searchsorted(positions, cut_index, side="left")]
            chunks.append(positions)
            counts[b] = len(positions)
        events = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
        rows = np.repeat(np.arange(len(users)), counts)
        m = sp.csr_matrix((np.ones(len(events)), (rows, self.log.item_idx[events])),
                          shape=(len(users), self.log.n_items))
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m


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


def bpr_negatives(rng: np.random.Generator, positives: np.ndarray, n_items: int) -> np.ndarray:
    """One negative per positive, uniform over the other items: shifting by 1..n-1 (mod n)
    can never land on the positive itself."""
    return (np.asarray(positives) + rng.integers(1, n_items, len(positives))) % n_items


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
            seed: int = 0, on_epoch: Callable[[int, BPRMF], None] | None = None) -> BPRMF:
        """Learn from events `known` only. The seed sets the initialisation, the negatives and
        the batch order. `on_epoch(epoch, model)` lets a tuner score checkpoints on the way
        (the model is in eval mode during the call)."""
        if log.n_items < 2:
            raise ValueError("BPR-MF needs at least two items to draw negatives from")
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = cls(log.n_users, log.n_items, dim)
        # fused: the same Adam in one pass over each tensor; the default update of a 68k-item
        # table took 20x longer a step on two cores (measured at Complete Journey's size).
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
        users = torch.as_tensor(log.user_idx[known.start:known.stop])
        items = torch.as_tensor(log.item_idx[known.start:known.stop])
        for epoch in range(1, epochs + 1):
            order = torch.as_tensor(rng.permutation(len(users)))
            for lo in range(0, len(order), batch_size):
                idx = order[lo:lo + batch_size]
                u, i = model.user(users[idx]), model.item(items[idx])
                j = model.item(torch.as_tensor(
                    bpr_negatives(rng, items[idx].numpy(), log.n_items)))
                loss = -F.logsigmoid((u * i).sum(-1) - (u * j).sum(-1)).mean()
                loss = loss + reg * (u.pow(2).sum(-1) + i.pow(2).sum(-1) + j.pow(2).sum(-1)).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if on_epoch is not None:
                on_epoch(epoch, model.eval())
                model.train()
        return model.eval()

    @torch.no_grad()
    def scores(self, users: np.ndarray, times: np.ndarray, cut_index: int,
               cut_time: float) -> torch.Tensor:
        return self.user(torch.as_tensor(np.asarray(users, dtype=np.int64))) @ self.item.weight.T


class GPTopFreqScorer:
    """GP-TopFreq: the items the user bought before, by how often (purchase events), then every
    other item by global popularity (all purchases before the batch start), which also breaks
    ties among the user's own items."""

    def __init__(self, log: EventLog):
        self.name = "GP-TopFreq"
        self.log = log
        self.events = UserEvents(log)

    def scores(self, users: np.ndarray, times: np.ndarray, cut_index: int,
               cut_time: float) -> torch.Tensor:
        counts = self.events.matrix(users, cut_index)
        popularity = _counts(self.log, 0, cut_index)
        # Frequencies are whole numbers, so popularity scaled into [0, 1) never reorders them.
        own = torch.as_tensor(counts.toarray(), dtype=torch.float64)
        return own + popularity / (float(popularity.max()) + 1.0)


def basket_ids(log: EventLog) -> np.ndarray:
    """A basket index per event, increasing with time: the invoice when the log has one, else
    the user's purchases at one timestamp."""
    tag = log.group if log.group is not None else log.ts
    keys = np.rec.fromarrays([log.user_idx, tag])
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    # Renumber so that ids follow the first event's position (time order).
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.ravel()]


class TIFUKNNScorer:
    """TIFU-KNN (Hu et al., SIGIR 2020). A user's baskets (0/1 item vectors), oldest first, are
    cut into groups of `group_size` counted from the most recent, so only the oldest group may
    be smaller. A group's vector is (1/|g|) sum_j r_b^(|g|-j) b_j (j = 1 oldest in the group),
    the user's vector (1/k) sum_i r_g^(k-i) g_i over its k groups (i = k most recent). The
    prediction is alpha * user + (1 - alpha) * the mean vector of the `neighbours` users
    nearest by Euclidean distance (among users with baskets before the batch, self excluded).
    Users without any basket get only the popularity tie-breaker."""

    def __init__(self, log: EventLog, *, group_size: int = 7, r_b: float = 1.0,
                 r_g: float = 0.6, neighbours: int = 300, alpha: float = 0.7):
        self.name = (f"TIFU-KNN (m={group_size}, r_b={r_b:g}, r_g={r_g:g}, k={neighbours}, "
                     f"alpha={alpha:g})")
        self.log, self.group_size, self.r_b, self.r_g = log, group_size, r_b, r_g
        self.neighbours, self.alpha = neighbours, alpha
        self.basket = basket_ids(log)
        # The last cut's user vectors and the last batch's (own, neighbour mean) parts, shared
        # with the scorers `with_alpha` makes: alpha only mixes them.
        self._cache: dict[str, tuple] = {}

    def with_alpha(self, alpha: float) -> TIFUKNNScorer:
        """The same scorer with another mixing weight, sharing this one's computed parts, so a
        grid over alpha evaluated batch by batch (protocols.evaluate_scorers) pays for the
        user vectors and the neighbours once."""
        other = TIFUKNNScorer.__new__(TIFUKNNScorer)
        other.__dict__.update(self.__dict__)
        other.alpha = alpha
        other.name = self.name.rsplit("alpha=", 1)[0] + f"alpha={alpha:g})"
        return other

    def user_vectors(self, cut_index: int) -> sp.csr_matrix:
        """[n_users, n_items] TIFU user vectors from the baskets before event `cut_index`."""
        cached = self._cache.get("vectors")
        if cached is not None and cached[0] == cut_index:
            return cached[1]
        log = self.log
        basket = self.basket[:cut_index]
        n_baskets = int(basket.max()) + 1 if cut_index else 0
        owner = np.zeros(n_baskets, dtype=np.int64)
        owner[basket] = log.user_idx[:cut_index]
        # Position of each basket among its user's baskets counted from the most recent (0).
        order = np.argsort(owner, kind="stable")  # per user, baskets stay in time order
        per_user = np.bincount(owner, minlength=log.n_users)
        starts = np.concatenate(([0], np.cumsum(per_user)[:-1]))
        from_end = np.empty(n_baskets, dtype=np.int64)
        from_end[order] = (per_user[owner[order]] - 1) - (np.arange(n_baskets)
                                                          - starts[owner[order]])
        n = per_user[owner]
        m = self.group_size
        group, within = from_end // m, from_end % m
        n_groups = -(-n // m)
        group_len = np.where(group < n_groups - 1, m, n - (n_groups - 1) * m)
        weight = (self.r_b ** within / group_len) * (self.r_g ** group / n_groups)
        # 0/1 basket vectors: an item counted twice in one basket still counts once. (One int64
        # key per pair: np.unique over stacked rows sorts records and took seconds a batch at
        # Complete Journey's size.)
        pairs = np.unique(basket * np.int64(log.n_items) + log.item_idx[:cut_index])
        pair_basket, pair_item = pairs // log.n_items, pairs % log.n_items
        vectors = sp.csr_matrix((weight[pair_basket], (owner[pair_basket], pair_item)),
                                shape=(log.n_users, log.n_items))
        self._cache["vectors"] = (cut_index, vectors)
        return vectors

    def _parts(self, users: np.ndarray, cut_index: int) -> tuple:
        """(own vectors [B, n_items], mean of the k nearest users' vectors or None, rows
        without history) for one batch's queries."""
        key = (cut_index, users.tobytes())
        cached = self._cache.get("parts")
        if cached is not None and cached[0] == key:
            return cached[1]
        vectors = self.user_vectors(cut_index)
        norms = np.asarray(vectors.multiply(vectors).sum(1)).ravel()
        active = np.flatnonzero(np.diff(vectors.indptr) > 0)
        query = vectors[users]
        near = None
        if len(active) > 1:
            dot = (query @ vectors[active].T).toarray()
            dist = norms[users][:, None] + norms[active][None, :] - 2 * dot
            dist[users[:, None] == active[None, :]] = np.inf  # never one's own neighbour
            k = min(self.neighbours, len(active) - 1)
            nearest = np.argpartition(dist, k - 1, axis=1)[:, :k]
            rows = np.repeat(np.arange(len(users)), k)
            pick = sp.csr_matrix((np.full(rows.size, 1.0 / k), (rows, active[nearest.ravel()])),
                                 shape=(len(users), self.log.n_users))
            near = (pick @ vectors).toarray()
        parts = (query.toarray(), near, norms[users] == 0)
        self._cache["parts"] = (key, parts)
        return parts

    def scores(self, users: np.ndarray, times: np.ndarray, cut_index: int,
               cut_time: float) -> torch.Tensor:
        own, near, empty = self._parts(np.asarray(users, dtype=np.int64), cut_index)
        mixed = self.alpha * own
        if near is not None:
            mixed += (1 - self.alpha) * near
        mixed[empty] = 0.0  # no history, no vector: popularity alone decides
        return torch.as_tensor(mixed) + _popularity_tie_break(self.log, cut_index)


class ItemKNNScorer:
    """Item-kNN: item-item cosine similarity of 0/1 purchase columns over the `known` events
    (each item keeps its `neighbours` most similar items, itself excluded); a user's score for
    an item is the sum of its similarities to the distinct items the user bought before the
    batch start. `similarity` (from `item_similarity` with at least as many neighbours) saves
    computing it again for each k of a grid."""

    def __init__(self, log: EventLog, known: range, *, neighbours: int = 100,
                 similarity: sp.csr_matrix | None = None):
        self.name = f"item-kNN (k={neighbours})"
        self.log = log
        if similarity is None:
            self.similarity = item_similarity(log, known, neighbours)
        else:  # the k best of a longer list, ties at the cut in the same order
            self.similarity = _top_per_row(similarity.copy(), neighbours)
        self.events = UserEvents(log)

    def scores(self, users: np.ndarray, times: np.ndarray, cut_index: int,
               cut_time: float) -> torch.Tensor:
        rows = self.events.matrix(users, cut_index, binary=True)
        # sim is kept row-wise per item; a score sums sim[j, i] over the user's items j.
        out = (rows @ self.similarity).toarray()
        return torch.as_tensor(out) + _popularity_tie_break(self.log, cut_index)


# Items per block of the similarity product: the full item x item co-purchase matrix of a large
# catalogue (68k items at Complete Journey, households buying hundreds of distinct items) has
# hundreds of millions of entries; a block's is bounded, and only its top-k rows are kept.
SIMILARITY_BLOCK = 1024


def item_similarity(log: EventLog, known: range, neighbours: int) -> sp.csr_matrix:
    """[n_items, n_items] cosine similarity of 0/1 purchase columns over `known`, each row
    cut to its `neighbours` largest entries (itself excluded; ties at the cut by item index)."""
    x = user_item_matrix(log, known.start, known.stop, binary=True)
    norms = np.sqrt(np.asarray(x.sum(0)).ravel())
    norms[norms == 0] = 1.0
    inverse = sp.diags(1 / norms)
    xt = x.T.tocsr()
    blocks = []
    for lo in range(0, log.n_items, SIMILARITY_BLOCK):
        hi = min(lo + SIMILARITY_BLOCK, log.n_items)
        block = (sp.diags(1 / norms[lo:hi]) @ (xt[lo:hi] @ x) @ inverse).tocoo()
        keep = block.col != block.row + lo  # no item is its own neighbour
        block = sp.csr_matrix((block.data[keep], (block.row[keep], block.col[keep])),
                              shape=(hi - lo, log.n_items))
        block.sort_indices()
        blocks.append(_top_per_row(block, neighbours))
    if not blocks:
        return sp.csr_matrix((log.n_items, log.n_items))
    return sp.vstack(blocks, format="csr")


def _top_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row's k largest entries (ties at the cut kept by index order), the rest dropped."""
    m.eliminate_zeros()
    rows, cols, vals = [], [], []
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        if hi - lo > k:
            keep = np.argsort(-m.data[lo:hi], kind="stable")[:k] + lo
        else:
            keep = np.arange(lo, hi)
        rows.append(np.full(len(keep), r))
        cols.append(m.indices[keep])
        vals.append(m.data[keep])
    if not rows:
        return m
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=m.shape)
