"""Snapshot policy and the 'which snapshot applies at t' index, against brute force."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from models.data.snapshots import (
    latest_snapshot_before,
    period_starts,
    plan_snapshots,
    snapshot_coverage,
)


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


def _brute_plan(user, ts, boundaries, min_new, first_after):
    out = []
    for u in sorted(set(user.tolist())):
        t = np.sort(ts[user == u])
        last = None  # no snapshot yet
        for k, b in enumerate(boundaries):
            before = int((t < b).sum())
            active = k == len(boundaries) - 1 or ((t >= b) & (t < boundaries[k + 1])).any()
            if last is None:
                grown = before >= (min_new if first_after is None else min(first_after, min_new))
            else:
                grown = before - last >= min_new
            if before > 0 and active and grown:
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
        for min_new in (1, 3, 8, 20):
            for first_after in (None, 2, 5):
                plan = plan_snapshots(user, ts, every, min_new, first_after)
                got = sorted(zip(plan.user.tolist(), plan.as_of.tolist(),
                                 plan.n_events.tolist(), strict=True))
                assert got == _brute_plan(user, ts, plan.boundaries.tolist(), min_new,
                                          first_after)


def test_first_snapshot_after_the_fifth_line():
    """A hand-made log under min_new=60, first_after=5 (the defaults):
    A: 4 lines in Jan, 1 in Feb, 2 in Mar, 1 in Apr -> 5 lines before Mar 1 and buys in March:
       first snapshot Mar 1 (not Feb 1: only 4 lines then), no refresh (growth < 60), and
       the final one is skipped too (growth 3 since Mar 1).
    B: 5 lines in Jan, nothing in Feb, 1 in Mar -> Feb 1 skipped (not buying in February),
       first snapshot Mar 1.
    C: 3 lines in Jan, 1 in Apr -> never 5 lines: no snapshot.
    D: 70 lines in Jan, 65 in Feb, 1 in Apr -> first Feb 1 (70), refresh Mar 1? not active in
       March, so no; Apr 1 refresh (grew 65 >= 60), final skipped (grew 1).
    E: 6 lines in April only -> only the final snapshot (6 lines before it).
    """
    log = ([("A", _ts(2011, 1, d)) for d in (3, 4, 5, 6)] + [("A", _ts(2011, 2, 9))]
           + [("A", _ts(2011, 3, 2)), ("A", _ts(2011, 3, 3)), ("A", _ts(2011, 4, 2))]
           + [("B", _ts(2011, 1, d)) for d in range(10, 15)] + [("B", _ts(2011, 3, 20))]
           + [("C", _ts(2011, 1, d)) for d in (7, 8, 9)] + [("C", _ts(2011, 4, 1, 5))]
           + [("D", _ts(2011, 1, 20) + m) for m in range(70)]
           + [("D", _ts(2011, 2, 20) + m) for m in range(65)] + [("D", _ts(2011, 4, 3))]
           + [("E", _ts(2011, 4, 5, 0, m)) for m in range(6)])
    ids = {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5}
    user = np.array([ids[u] for u, _ in log])
    ts = np.array([t for _, t in log])
    plan = plan_snapshots(user, ts)  # month, min_new=60, first_after=5
    final = int(ts.max()) + 1
    got = sorted(zip(plan.user.tolist(), plan.as_of.tolist(), plan.n_events.tolist(),
                     strict=True))
    assert got == [
        (1, _ts(2011, 3, 1), 5),
        (2, _ts(2011, 3, 1), 5),
        (4, _ts(2011, 2, 1), 70),
        (4, _ts(2011, 4, 1), 135),
        (5, final, 6),
    ]
    # The policy before issue 12 (first snapshot after 60 lines) reaches only D.
    old = plan_snapshots(user, ts, first_after=None)
    assert set(old.user.tolist()) == {4}

    # Coverage of the April events (A, C, D, E: 1 + 1 + 1 + 6 lines), counted by hand:
    # A's Apr 2 line has the Mar 1 snapshot (32 days old); C none; D's Apr 3 line has Apr 1
    # (2 days); E's lines fall before the final snapshot: none. 2 of 9 covered; median age of
    # (32, 2) days is 17. Reachable: A, C, D have earlier lines (3); E's first line has none,
    # its later five do (5): 8 of 9.
    april = ts >= _ts(2011, 4, 1)
    cov = snapshot_coverage(plan.user, plan.as_of, user[april], ts[april],
                            log_user=user, log_ts=ts)
    assert (cov.events, cov.covered, cov.median_age_days, cov.reachable) == (9, 2, 17.0, 8)
    assert cov.share == pytest.approx(2 / 9)


@pytest.mark.parametrize("seed", range(3))
def test_coverage_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    user = rng.integers(0, 15, 300)
    ts = rng.integers(_ts(2011, 1, 1), _ts(2011, 7, 1), 300)
    plan = plan_snapshots(user, ts, "month", min_new=10, first_after=3)
    q = rng.permutation(300)[:120]
    cov = snapshot_coverage(plan.user, plan.as_of, user[q], ts[q], log_user=user, log_ts=ts)
    ages, reachable = [], 0
    for i in q:
        mine = [a for u, a in zip(plan.user, plan.as_of, strict=True)
                if u == user[i] and a <= ts[i]]
        if mine:
            ages.append((ts[i] - max(mine)) / 86400)
        reachable += bool(((user == user[i]) & (ts < ts[i])).any())
    assert cov.covered == len(ages) and cov.events == 120 and cov.reachable == reachable
    assert cov.median_age_days == pytest.approx(float(np.median(ages)))
    assert 0 < cov.covered <= cov.reachable < cov.events  # the check is not vacuous


def test_bad_policy_settings_are_refused():
    with pytest.raises(ValueError, match="first_after"):
        plan_snapshots(np.array([1]), np.array([5]), first_after=0)
    with pytest.raises(ValueError, match="min_new"):
        plan_snapshots(np.array([1]), np.array([5]), min_new=0)


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
    cov = snapshot_coverage(plan.user, plan.as_of, np.array([], dtype=np.int64),
                            np.array([], dtype=np.int64))
    assert (cov.events, cov.covered, cov.median_age_days, cov.share) == (0, 0, None, 0.0)
