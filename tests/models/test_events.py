"""EventLog construction, the chronological split at timestamp boundaries and time batches."""

from __future__ import annotations

import numpy as np
import pytest

from models.data.events import EventLog, NotEnoughEventsError, chronological_split, time_batches


def _log(ts, group=None) -> EventLog:
    n = len(ts)
    return EventLog.from_arrays(np.arange(n) % 3, np.arange(n) % 5, ts, group=group)


def test_from_arrays_sorts_stably_and_validates():
    log = EventLog.from_arrays([0, 1, 2, 3], [0, 1, 2, 3], [5.0, 1.0, 5.0, 1.0])
    assert log.ts.tolist() == [1.0, 1.0, 5.0, 5.0]
    assert log.user_idx.tolist() == [1, 3, 0, 2]  # same-time events keep their input order
    assert (log.n_users, log.n_items) == (4, 4)
    with pytest.raises(ValueError, match="same length"):
        EventLog.from_arrays([0], [0, 1], [0.0])
    with pytest.raises(ValueError, match="out of range"):
        EventLog.from_arrays([0, 5], [0, 0], [0.0, 1.0], n_users=3)
    with pytest.raises(ValueError, match="finite"):
        EventLog.from_arrays([0], [0], [np.nan])


def test_fingerprint_changes_with_content():
    a = _log(np.arange(10.0))
    assert a.fingerprint() == _log(np.arange(10.0)).fingerprint()
    assert a.fingerprint() != _log(np.arange(10.0) + 1).fingerprint()


def test_split_without_ties_is_exact():
    split = chronological_split(_log(np.arange(100.0)))
    assert (split.train, split.val, split.test) == (range(0, 70), range(70, 85), range(85, 100))


def test_split_moves_cuts_to_nearest_timestamp_boundary():
    # 100 events; times 60..79 share one timestamp, so the nominal cut at 70 cannot stay there.
    ts = np.arange(100.0)
    ts[60:80] = 60.0
    log = _log(ts)
    split = chronological_split(log)
    assert split.train.stop in (60, 80)
    assert split.train.stop == 60  # |60-70| == |80-70|: ties go to the earlier boundary
    for a, b in ((split.train, split.val), (split.val, split.test)):
        assert log.ts[a.stop - 1] < log.ts[b.start]  # no timestamp straddles two parts
    assert split.val.stop == 85


def test_split_respects_baskets_and_random_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ts = np.sort(rng.integers(0, 30, 400)).astype(float)
        log = _log(ts)
        split = chronological_split(log)
        assert split.train.stop == split.val.start and split.val.stop == split.test.start
        assert min(len(split.train), len(split.val), len(split.test)) > 0
        for cut in (split.val.start, split.test.start):
            assert log.ts[cut - 1] < log.ts[cut]
    # Two invoices at the same second: the basket id forbids cutting between their lines too.
    ts = np.repeat(np.arange(10.0), 10)
    group = np.arange(100) // 5  # invoices of 5 lines, two per second
    split = chronological_split(_log(ts, group))
    assert split.train.stop % 10 == 0


def test_split_refuses_tiny_or_single_time_logs():
    with pytest.raises(NotEnoughEventsError, match="too few"):
        chronological_split(_log([1.0, 2.0]))
    with pytest.raises(NotEnoughEventsError, match="distinct timestamps"):
        chronological_split(_log(np.zeros(50)))


def test_time_batches_cover_part_and_end_on_boundaries():
    ts = np.repeat(np.arange(50.0), 4)  # 4 events per timestamp
    log = _log(ts)
    batches = time_batches(log, range(0, 200), 10)
    assert batches[0] == range(0, 12)  # 10 would cut a timestamp: extended to the next boundary
    assert [i for b in batches for i in b] == list(range(200))
    for b in batches[1:]:
        assert log.ts[b.start - 1] < log.ts[b.start]
    assert time_batches(log, range(8, 20), 1000) == [range(8, 20)]
