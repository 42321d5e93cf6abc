"""Buying facts: hand-computed values, one event, non-finite numbers, and no leak from events at
or after as_of on a real workspace (the job's own history builder, no LLM)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.profiles.facts import (
    BuyingFacts,
    buying_facts,
    describe_facts,
    store_median_price,
)
from models.profiles.prompt import (
    PROMPT_VERSION,
    HistoryEvent,
    UserHistory,
    build_messages,
    history_facts,
    input_hash,
    profile_schema,
)

DAY = 86400


def _facts(rows, as_of, store_median):
    ts, item, qty, price, value = zip(*rows, strict=True)
    return buying_facts(ts, item, qty, price, value, as_of=as_of, store_median=store_median)


def test_hand_computed_facts():
    # (ts, item, quantity, unit price, line value)
    rows = [(0, "a", 1, 2.0, None), (0, "b", 3, 4.0, None),  # order 1: value 2 + 12
            (10 * DAY, "a", 2, 2.0, None), (10 * DAY, "c", 1, 10.0, None),  # order 2: 4 + 10
            (40 * DAY, "a", 5, 2.0, None)]  # order 3: 10
    f = _facts(rows, as_of=50 * DAY, store_median=4.0)
    assert (f.lines, f.orders) == (5, 3)
    assert f.orders_per_month == pytest.approx(3 / (50 / 30.44))  # tenure: first order to as_of
    assert f.frequency == "regular"  # 1.83 a month: under the 2 of "frequent"
    assert f.basket_lines == pytest.approx(5 / 3)
    assert f.basket_value == pytest.approx((14 + 14 + 10) / 3)
    assert f.repeat_share == pytest.approx(2 / 5)  # a on day 10 and day 40
    assert f.days_since_last == 10
    assert f.price_ratio == pytest.approx(2.0 / 4.0) and f.price_level == "low"
    assert describe_facts(f) == (
        "Buying: regular (1.8 orders a month); 1.7 lines, value 13 an order; 40% repeat lines; "
        "last order 10 days ago; price level low (0.5x store median).")


def test_a_repeat_needs_an_earlier_order_and_the_rate_a_month_of_tenure():
    # The same item twice in one order is not a repeat; two orders an hour apart, an hour
    # before as_of, read as 2 a month (tenure floored at one month), not hundreds.
    rows = [(0, "a", 1, 1.0, None), (0, "a", 1, 1.0, None), (3600, "b", 1, 1.0, None)]
    f = _facts(rows, as_of=7200, store_median=1.0)
    assert f.repeat_share == 0.0
    assert f.orders_per_month == 2.0 and f.frequency == "frequent"
    assert f.price_level == "mid"


def test_one_event():
    f = _facts([(5 * DAY, "a", 2, 3.0, 6.0)], as_of=8 * DAY, store_median=2.0)
    assert (f.lines, f.orders, f.orders_per_month, f.frequency) == (1, 1, None, "one-off")
    assert (f.basket_lines, f.basket_value, f.repeat_share) == (1.0, 6.0, 0.0)
    assert f.days_since_last == 3 and f.price_level == "high"
    assert describe_facts(f).startswith("Buying: one-off (1 order so far); 1 lines, value 6")
    # Through the prompt and schema: a one-line customer renders and is asked for everything.
    h = UserHistory("solo", {"country": "France"},
                    [HistoryEvent(5 * DAY, "a", "JUMBO BAG RED", None, None, 2, 3.0, 6.0,
                                  "bags")],
                    as_of=8 * DAY, store_median_price=2.0)
    _, user, cands = build_messages(h)
    assert "1 lines in 1 order over 0 days" in user and "one-off" in user
    assert profile_schema(cands)["required"] == ["crowd_segment", "interests",
                                                 "preferred_categories"]


def test_no_events():
    f = buying_facts([], [], [], [], [], as_of=10, store_median=None)
    assert f == BuyingFacts(0, 0, None, None, None, None, None, None)
    assert describe_facts(f) == "Buying: no orders yet."


def test_non_finite_numbers_are_skipped_never_printed():
    nan, inf = math.nan, math.inf
    events = [HistoryEvent(0, "a", "JUMBO BAG", None, None, nan, inf, None),
              HistoryEvent(0, "b", "ALARM CLOCK", None, None, 2, nan, nan),
              HistoryEvent(5 * DAY, "c", "LUNCH BOX", None, None, 1, -1.0, inf),
              HistoryEvent(6 * DAY, "d", "TEA CUP", None, None, 1e308, 1e308, None)]
    for median in (nan, inf, 0.0, None):
        h = UserHistory("x", {"country": nan, "age": "45-54", "income": None, "size": inf,
                              "note": "NaN"}, events, as_of=9 * DAY, store_median_price=median)
        f = history_facts(h)
        assert (f.lines, f.orders) == (4, 3)
        # Every order holds a line of unknown (or overflowing) value: no mean value.
        assert f.basket_value is None and f.price_ratio is None and f.price_level is None
        _, user, _ = build_messages(h)
        assert "value unknown" in user and "price level unknown" in user
        assert "Customer: age: 45-54." in user  # the unknown attributes are left out
        assert not any(w in user.lower() for w in ("nan", "inf")), user
        assert input_hash(h, PROMPT_VERSION, "m") == input_hash(h, PROMPT_VERSION, "m")
    # A known store median with one usable user price gives a level again.
    h = UserHistory("x", {}, events[:3] + [HistoryEvent(7 * DAY, "e", "MUG", None, None, 1, 4.0)],
                    as_of=9 * DAY, store_median_price=2.0)
    assert history_facts(h).price_ratio == 2.0


def test_store_median_price():
    # price NaN: value / quantity (Complete Journey has no price column); price 0 with value 5
    # over quantity 0 gives no price; a plain price counts as is.
    assert store_median_price(np.array([np.nan, 0.0, 3.0]), np.array([8.0, 5.0, np.nan]),
                              np.array([2.0, 0.0, 1.0])) == 3.5
    assert store_median_price(np.array([np.nan]), np.array([np.inf]), np.array([1.0])) is None
    assert store_median_price(np.zeros(0), np.zeros(0), np.zeros(0)) is None


def test_input_hash_sees_prices_and_the_store_median():
    ev = [HistoryEvent(1, "a", "BAG", None, None, 1, 2.0)]

    def digest(events, median):
        return input_hash(UserHistory("u", {}, events, as_of=10, store_median_price=median),
                          PROMPT_VERSION, "m")

    base = digest(ev, 2.0)
    assert base != digest(ev, 3.0)
    assert base != digest([HistoryEvent(1, "a", "BAG", None, None, 1, 2.5)], 2.0)
    assert digest(ev, None) == digest(ev, math.nan)  # both unknown
    assert PROMPT_VERSION != "p1"  # profiles of the prompt without facts are redone


def test_facts_use_only_events_before_as_of(demo_workspace):
    """On a real workspace copy: change every later price, the user's later quantities, and add
    a line at as_of and after it; the prompt (and its hash) stays the same. Changing earlier
    prices of the other customers does change it, so the comparison can fail."""
    from dynllm_tui.jobs.profiles import snapshot_history
    from models.data.snapshots import plan_snapshots
    from storage.profiles import interaction_arrays
    from storage.workspace import Workspace

    with Workspace.open(demo_workspace, create=False) as ws:
        log = interaction_arrays(ws)
        plan = plan_snapshots(log["user"], log["ts"], "month")
        # A light buyer's first snapshot inside the timeline: < 60 lines, buys again later.
        pick = [(u, a, n) for u, a, n in zip(plan.user.tolist(), plan.as_of.tolist(),
                                              plan.n_events.tolist(), strict=True)
                if a < plan.boundaries[-1] and n < 60]
        assert pick, "the first-snapshot rule gives light buyers a snapshot"
        user_id, as_of, n_events = pick[0]

        def prompt():
            h = snapshot_history(ws, user_id, as_of)
            assert len(h.events) == n_events
            return build_messages(h)[1], input_hash(h, PROMPT_VERSION, "m")

        before = prompt()
        assert "Buying:" in before[0] and "price level unknown" not in before[0]
        with ws.transaction() as conn:
            changed = conn.execute(
                "UPDATE interactions SET price = price * 7, value = value * 7 WHERE ts >= ?",
                (as_of,)).rowcount
            changed += conn.execute(
                "UPDATE interactions SET quantity = quantity + 50 WHERE user_id = ? AND ts >= ?",
                (user_id, as_of)).rowcount
            for ts in (as_of, as_of + 3600):
                conn.execute(
                    "INSERT INTO interactions (user_id, item_id, ts, quantity, price, value, "
                    "basket, import_id, line) SELECT user_id, item_id, ?, 99, 1000, 99000, "
                    "'later', import_id, -1 FROM interactions WHERE user_id = ? LIMIT 1",
                    (ts, user_id))
        assert changed > 0
        assert prompt() == before
        with ws.transaction() as conn:
            conn.execute("UPDATE interactions SET price = price * 7, value = value * 7 "
                         "WHERE ts < ? AND user_id != ?", (as_of, user_id))
        after = prompt()
        assert after[0] != before[0] and after[1] != before[1]
