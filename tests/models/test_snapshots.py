"""Snapshot policy and the 'which snapshot applies at t' index, against brute force."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from models.data.snapshots import latest_snapshot_before, period_starts, plan_snapshots


def _ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp())


def test_period_starts():
    lo, hi = _ts(2010, 12, 1, 8, 26), _ts(2011, 3, 9, 12)
    assert period_starts(lo, hi, "month") == [_ts(2011, 1, 1), _ts(2011, 2, 1), _ts(2011, 3, 1)]
    assert period_starts(lo, hi, "quarter") == [_ts(2011, 1, 1)]
    weeks = period_starts(lo, _ts(2010, 12, 20), "week")
    assert weeks == [_ts(2010, 12, 6), _ts(2010, 12, 13), _ts(2010, 12, 20)]  # Mondays
    with pytest.raises(ValueError, match="unknown period"):
        period_starts(lo, hi, "fortnight")


def test_hand_computed_plan():
    # user 1: 3 events in Dec, 1 in Jan, 2 in Feb; user 2: 1 event in Jan only.
    user = np.array([1, 1, 1, 1, 1, 1, 2])
    ts = np.array([_ts(2010, 12, 2), _ts(2010, 12, 3), _ts(2010, 12, 4), _ts(2011, 1, 5),
                   _ts(2011, 2, 1, 10), _ts(2011, 2, 2), _ts(2011, 1, 9)])
    plan = plan_snapshots(user, ts, "month", min_new=1)
    final = ts.max() + 1
    assert plan.boundaries.tolist() == [_ts(2011, 1, 1), _ts(2011, 2, 1), final]
    got = list(zip(plan.user.tolist(), plan.as_of.tolist(), plan.n_events.tolist(), strict=True))
    assert got == [
        (1, _ts(2011, 1, 1), 3),  # history 3, active in January
        (1, _ts(2011, 2, 1), 4),  # grew by 1, active in February
        (1, final, 6),  # final snapshot: grew by 2
        (2, final, 1),  # user 2 was not active after Feb 1, so only the final one
    ]
    # With min_new=2 the February snapshot of user 1 (growth 1) is skipped.
    plan2 = plan_snapshots(user, ts, "month", min_new=2)
    assert (1, _ts(2011, 2, 1)) not in set(zip(plan2.user.tolist(), plan2.as_of.tolist(),
                                               strict=True))


def _brute_plan(user, ts, boundaries, min_new):
    out = []
    for u in sorted(set(user.tolist())):
        t = np.sort(ts[user == u])
        last = 0
        for k, b in enumerate(boundaries):
            before = int((t < b).sum())
            active = k == len(boundaries) - 1 or ((t >= b) & (t < boundaries[k + 1])).any()
            if before > 0 and active and before - last >= min_new:
                out.append((u, int(b), before))
                last = before
    return sorted(out)


@pytest.mark.parametrize("seed", range(5))
def test_plan_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 400
    user = rng.integers(1, 30, n)
    ts = rng.integers(_ts(2011, 1, 1), _ts(2011, 9, 1), n)
    for every in ("week", "month", "quarter"):
        for min_new in (1, 3, 8):
            plan = plan_snapshots(user, ts, every, min_new)
            got = sorted(zip(plan.user.tolist(), plan.as_of.tolist(), plan.n_events.tolist(),
                             strict=True))
            assert got == _brute_plan(user, ts, plan.boundaries.tolist(), min_new)


@pytest.mark.parametrize("seed", range(5))
def test_latest_snapshot_before_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    snap_user = rng.integers(0, 10, 50)
    snap_as_of = rng.integers(0, 1000, 50)
    q_user = rng.integers(0, 12, 300)
    q_t = rng.integers(0, 1100, 300)
    got = latest_snapshot_before(snap_user, snap_as_of, q_user, q_t)
    for i in range(300):
        candidates = [j for j in range(50) if snap_user[j] == q_user[i] and snap_as_of[j] <= q_t[i]]
        if not candidates:
            assert got[i] == -1
        else:
            best = max(snap_as_of[j] for j in candidates)
            assert snap_user[got[i]] == q_user[i] and snap_as_of[got[i]] == best


def test_empty_log():
    plan = plan_snapshots(np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert len(plan) == 0
    assert latest_snapshot_before(plan.user, plan.as_of, np.array([1]), np.array([5])).tolist() \
        == [-1]
