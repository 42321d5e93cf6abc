"""Buying facts of one customer, computed from their own history before `as_of`.

The profiling LLM is a 135M model: given only item titles it names a segment by guessing (76 of
107 demo profiles shared one). These facts hand it the behaviour the data shows, in numbers and
in the words a segment is made of:

  - orders and orders per month (an order is the lines bought at one moment; the importers give
    a basket one timestamp). The rate is taken over the customer's tenure, from the first order
    to `as_of`, at least one month: two orders on one day read "2 a month", not "60 a month".
    With a single order there is no rate.
  - mean lines and mean value per order (value: the line's own value, else quantity x unit
    price; an order with any line of unknown value is left out of the mean);
  - share of repeat lines: lines whose item the customer bought in an earlier order;
  - days since the last order;
  - price level: the median unit price of the customer's lines over the store's median unit
    price of every line sold before `as_of` (computed by the caller from the store's events
    before `as_of`, so no later price leaks in).

Numbers that are not finite (NaN or infinite prices, values or quantities, a missing store
median) are skipped; a fact with nothing left to compute it from is None and is said "unknown" or
left out. Pure numpy; nothing here reads storage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.data.events import DAY

MONTH = 30.44 * DAY
# Bands for the words of the facts, chosen on Online Retail: its median customer orders about
# once a month; a ratio inside 0.8-1.25 of the store's median price is "mid".
FREQUENT_PER_MONTH = 2.0
REGULAR_PER_MONTH = 0.5
LOW_PRICE, HIGH_PRICE = 0.8, 1.25
MOSTLY_REPEAT = 0.5


@dataclass(frozen=True)
class BuyingFacts:
    """What one customer's history says about their buying; None means unknown."""

    lines: int
    orders: int
    orders_per_month: float | None  # None with one order (no rate) or none
    basket_lines: float | None
    basket_value: float | None
    repeat_share: float | None
    days_since_last: float | None  # None when as_of is not given
    price_ratio: float | None  # user's median unit price / store median unit price

    @property
    def frequency(self) -> str:
        if self.orders <= 1 or self.orders_per_month is None:
            return "one-off"
        if self.orders_per_month >= FREQUENT_PER_MONTH:
            return "frequent"
        return "regular" if self.orders_per_month >= REGULAR_PER_MONTH else "occasional"

    @property
    def price_level(self) -> str | None:
        if self.price_ratio is None:
            return None
        if self.price_ratio < LOW_PRICE:
            return "low"
        return "high" if self.price_ratio > HIGH_PRICE else "mid"


def _floats(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    # None (a NULL column) becomes NaN, so it is skipped like any other non-finite number.
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def unit_prices(price: np.ndarray, value: np.ndarray, quantity: np.ndarray) -> np.ndarray:
    """Unit price per line: the recorded price, else value / quantity; NaN where neither gives
    a finite positive number (a price of zero or below is not a price)."""
    price, value, quantity = _floats(price), _floats(value), _floats(quantity)
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = value / quantity
    out = np.where(np.isfinite(price) & (price > 0), price, derived)
    return np.where(np.isfinite(out) & (out > 0), out, np.nan)


def line_values(price: np.ndarray, value: np.ndarray, quantity: np.ndarray) -> np.ndarray:
    """Value per line: the recorded value, else quantity x unit price (a positive one); NaN
    where unknown."""
    price, value, quantity = _floats(price), _floats(value), _floats(quantity)
    price = np.where(price > 0, price, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.where(np.isfinite(value), value, quantity * price)
    return np.where(np.isfinite(out), out, np.nan)


def store_median_price(price: np.ndarray, value: np.ndarray, quantity: np.ndarray) -> float | None:
    """The median unit price over the given lines (the caller passes the store's lines before
    `as_of`); None when no line has a usable price."""
    units = unit_prices(price, value, quantity)
    units = units[np.isfinite(units)]
    return float(np.median(units)) if len(units) else None


def buying_facts(
    ts: np.ndarray,
    item: np.ndarray,
    quantity: np.ndarray,
    price: np.ndarray,
    value: np.ndarray,
    *,
    as_of: int | None,
    store_median: float | None,
) -> BuyingFacts:
    """The facts of the module docstring over one user's lines (all before `as_of`)."""
    ts = np.asarray(ts, dtype=np.int64)
    n = len(ts)
    if n == 0:
        return BuyingFacts(0, 0, None, None, None, None, None, None)
    orders, order_of = np.unique(ts, return_inverse=True)
    n_orders = len(orders)
    end = int(ts.max()) if as_of is None else int(as_of)
    tenure_months = max((end - int(ts.min())) / MONTH, 1.0)
    per_month = n_orders / tenure_months if n_orders > 1 else None

    values = line_values(price, value, quantity)
    order_value = np.zeros(n_orders)
    np.add.at(order_value, order_of, np.nan_to_num(values, nan=0.0))
    known = np.ones(n_orders, dtype=bool)
    known[order_of[~np.isfinite(values)]] = False
    basket_value = float(order_value[known].mean()) if known.any() else None
    if basket_value is not None and not np.isfinite(basket_value):
        basket_value = None  # finite lines can still sum past float range

    # A repeat line: its item was bought in an earlier order (not just earlier in this one).
    _, item_code = np.unique(np.asarray(item).astype(str), return_inverse=True)
    first = np.full(item_code.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(first, item_code, ts)
    repeat_share = float((ts > first[item_code]).mean())

    units = unit_prices(price, value, quantity)
    units = units[np.isfinite(units)]
    price_ratio = None
    if len(units) and store_median is not None and np.isfinite(store_median) \
            and store_median > 0:
        price_ratio = float(np.median(units) / store_median)
    return BuyingFacts(
        lines=n,
        orders=n_orders,
        orders_per_month=per_month,
        basket_lines=n / n_orders,
        basket_value=basket_value,
        repeat_share=repeat_share,
        days_since_last=None if as_of is None else (int(as_of) - int(ts.max())) / DAY,
        price_ratio=price_ratio if price_ratio is not None and np.isfinite(price_ratio) else None,
    )


def _short(x: float) -> str:
    # Few tokens: whole numbers from 10 up, one decimal below.
    return f"{x:.0f}" if abs(x) >= 10 else f"{x:.1f}".removesuffix(".0")


def describe_facts(facts: BuyingFacts) -> str:
    """One compact line for the prompt, e.g. "Buying: frequent (4.2 orders a month); 29 lines,
    value 310 an order; 62% repeat lines; last order 12 days ago; price level low (0.6x store
    median)." Unknown facts are said "unknown" or left out."""
    if facts.orders == 0:
        return "Buying: no orders yet."
    if facts.orders_per_month is None:
        parts = ["one-off (1 order so far)"]
    else:
        parts = [f"{facts.frequency} ({_short(facts.orders_per_month)} orders a month)"]
    value = "value unknown" if facts.basket_value is None else \
        f"value {_short(facts.basket_value)}"
    parts.append(f"{_short(facts.basket_lines or 0)} lines, {value} an order")
    if facts.repeat_share is not None:
        parts.append(f"{facts.repeat_share:.0%} repeat lines")
    if facts.days_since_last is not None:
        parts.append(f"last order {int(facts.days_since_last)} days ago")
    level = facts.price_level
    parts.append("price level unknown" if level is None else
                 f"price level {level} ({facts.price_ratio:.1f}x store median)")
    return "Buying: " + "; ".join(parts) + "."
