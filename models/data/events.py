"""The interaction log as the models see it, the chronological split and time-ordered batches.

Everything is plain numpy: the log is a set of parallel arrays sorted by time, users and items
are dense indices (0..n_users-1, 0..n_items-1); mapping to workspace ids is the caller's job.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

DAY = 86_400.0  # seconds: event times are Unix seconds


class NotEnoughEventsError(ValueError):
    """The log is too small (or too concentrated in time) to split or train on."""


@dataclass(frozen=True, eq=False)
class EventLog:
    """Purchases (user, item, time) sorted by time; ties keep their input order."""

    user_idx: np.ndarray  # int64 [n]
    item_idx: np.ndarray  # int64 [n]
    ts: np.ndarray  # float64 [n], seconds, non-decreasing
    n_users: int
    n_items: int
    group: np.ndarray | None = None  # int64 [n]: basket / invoice id, or None

    @classmethod
    def from_arrays(
        cls,
        user_idx: np.ndarray,
        item_idx: np.ndarray,
        ts: np.ndarray,
        n_users: int | None = None,
        n_items: int | None = None,
        group: np.ndarray | None = None,
    ) -> EventLog:
        """Validate and sort (stably, so same-time events keep their order) into an EventLog."""
        user_idx = np.asarray(user_idx, dtype=np.int64)
        item_idx = np.asarray(item_idx, dtype=np.int64)
        ts = np.asarray(ts, dtype=np.float64)
        if not (len(user_idx) == len(item_idx) == len(ts)):
            raise ValueError("user_idx, item_idx and ts must have the same length")
        if group is not None:
            group = np.asarray(group, dtype=np.int64)
            if len(group) != len(ts):
                raise ValueError("group must have the same length as ts")
        if len(ts) and not np.isfinite(ts).all():
            raise ValueError("timestamps must be finite")
        if len(ts) and (user_idx.min() < 0 or item_idx.min() < 0):
            raise ValueError("user and item indices must be >= 0")
        n_users = int(user_idx.max() + 1 if len(ts) else 0) if n_users is None else int(n_users)
        n_items = int(item_idx.max() + 1 if len(ts) else 0) if n_items is None else int(n_items)
        if len(ts) and (user_idx.max() >= n_users or item_idx.max() >= n_items):
            raise ValueError("an index is out of range for n_users / n_items")
        order = np.argsort(ts, kind="stable")
        return cls(
            user_idx=user_idx[order],
            item_idx=item_idx[order],
            ts=ts[order],
            n_users=n_users,
            n_items=n_items,
            group=None if group is None else group[order],
        )

    def __len__(self) -> int:
        return len(self.ts)

    def fingerprint(self) -> str:
        """A hash of the content, so a checkpoint can tell that its data has changed."""
        digest = hashlib.sha256()
        digest.update(np.array([self.n_users, self.n_items], dtype=np.int64).tobytes())
        for array in (self.user_idx, self.item_idx, self.ts):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def with_events(self, user_idx: np.ndarray, item_idx: np.ndarray, ts: np.ndarray) -> EventLog:
        """The same universe of users and items with other events (tests perturb logs this way)."""
        return EventLog.from_arrays(user_idx, item_idx, ts, self.n_users, self.n_items)


@dataclass(frozen=True)
class Split:
    """Index ranges [start, stop) of the chronological parts of an EventLog."""

    train: range
    val: range
    test: range


def _boundaries(log: EventLog) -> np.ndarray:
    """Indices i where a new timestamp (and a new basket, when baskets are known) starts, i.e.
    where the log may be cut; 0 and len(log) included."""
    ts = log.ts
    cut_ok = ts[1:] != ts[:-1]
    if log.group is not None:
        cut_ok &= log.group[1:] != log.group[:-1]
    return np.concatenate(([0], np.flatnonzero(cut_ok) + 1, [len(ts)])).astype(np.int64)


def _nearest(boundaries: np.ndarray, target: float, lo: int, hi: int) -> int:
    """The boundary nearest to `target` within (lo, hi); ties go to the earlier boundary."""
    inside = boundaries[(boundaries > lo) & (boundaries < hi)]
    if not len(inside):
        raise NotEnoughEventsError(
            "too few distinct timestamps to split the log into train, validation and test parts"
        )
    return int(inside[np.argmin(np.abs(inside - target))])


def chronological_split(log: EventLog, train: float = 0.70, val: float = 0.15) -> Split:
    """Split by event order into train / val / test (the rest). Each nominal cut point moves to
    the nearest timestamp boundary, so events sharing a timestamp (one invoice) never straddle
    two parts; every part keeps at least one event."""
    if not (0 < train < 1 and 0 < val < 1 and train + val < 1):
        raise ValueError("fractions must be in (0, 1) and leave room for a test part")
    n = len(log)
    if n < 3:
        raise NotEnoughEventsError(f"{n} interactions are too few to split (need at least 3)")
    bounds = _boundaries(log)
    cut1 = _nearest(bounds, train * n, 0, n)
    cut2 = _nearest(bounds, (train + val) * n, cut1, n)
    return Split(train=range(0, cut1), val=range(cut1, cut2), test=range(cut2, n))


def time_batches(log: EventLog, part: range, batch_size: int) -> list[range]:
    """Consecutive batches covering `part` in time order, each about `batch_size` events.

    A batch always ends at a timestamp boundary: everything a batch may use (memory, neighbours,
    profiles) comes from events strictly before its first timestamp, so an invoice split over two
    batches would let one half see the other."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    bounds = _boundaries(log)
    out = []
    start = part.start
    while start < part.stop:
        # First boundary at or after start + batch_size, capped by the part's end.
        idx = np.searchsorted(bounds, start + batch_size, side="left")
        stop = min(int(bounds[idx]) if idx < len(bounds) else part.stop, part.stop)
        out.append(range(start, stop))
        start = stop
    return out
