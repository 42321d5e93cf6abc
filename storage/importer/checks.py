"""Stage 2 of an import: every row kept or rejected with a reason (vectorised).

A row gets the first reason that applies, in the order of REASONS. Numbers that are written but
not finite ("inf", "-inf", "NaN", "1e309", or a value that overflows when derived from quantity
times price) are rejects of their own, never stored: a NaN quantity must not become 1.0 and an
infinite price must not reach the profiles. The last reason, `duplicate`, needs the keys already
in the workspace and is marked under the write lock by duplicates.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.importer.reading import id_column, number_column, text_column, time_column
from storage.importer.spec import ImportSpec
from storage.sources import Table
from storage.timeparse import TimeParser

REASONS = (
    "kept",
    "cancellation",
    "missing_user",
    "missing_item",
    "non_product_item",
    "non_finite_quantity",
    "non_positive_quantity",
    "non_finite_price",
    "non_positive_price",
    "negative_price",
    "non_finite_value",
    "missing_time",
    "duplicate",
)
CODE = {name: code for code, name in enumerate(REASONS)}


@dataclass
class Classified:
    """The outcome of checking every row: reason codes and the fields as they will be stored
    (missing quantity = 1, value and unit price completing each other)."""

    reason: np.ndarray  # int8 per row, 0 = kept, else index into REASONS
    user: pa.ChunkedArray
    item: pa.ChunkedArray
    ts: np.ndarray
    quantity: np.ndarray
    price: np.ndarray
    value: np.ndarray
    basket: pa.ChunkedArray | None
    title: pa.ChunkedArray | None


def check_rows(
    data: pa.Table, lines: np.ndarray, table: Table, spec: ImportSpec, parser: TimeParser
) -> Classified:
    """Reason codes for every row except `duplicate`, and the stored form of each field."""
    cmap, rules = spec.columns, spec.rules
    n = data.num_rows
    reason = np.zeros(n, dtype=np.int8)

    def mark(name: str, condition: np.ndarray) -> None:
        reason[(reason == 0) & condition] = CODE[name]

    def flag(array: pa.ChunkedArray) -> np.ndarray:
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)

    def numbers(name: str | None) -> tuple[np.ndarray, np.ndarray]:
        if not name:
            return np.full(n, np.nan), np.zeros(n, dtype=bool)
        return number_column(data.column(name), name, table, lines)

    basket = id_column(data.column(cmap.basket)) if cmap.basket else None
    if basket is not None and rules.cancellation_prefix:
        mark("cancellation", flag(pc.starts_with(basket, rules.cancellation_prefix)))
    user = id_column(data.column(cmap.user))
    mark("missing_user", flag(pc.equal(user, "")))
    item = id_column(data.column(cmap.item))
    mark("missing_item", flag(pc.equal(item, "")))
    if rules.non_product_items or rules.non_product_prefixes:
        upper = pc.utf8_upper(item)
        non_product = flag(pc.is_in(upper, value_set=pa.array(sorted(rules.non_product_items),
                                                              pa.string())))
        for prefix in rules.non_product_prefixes:
            non_product |= flag(pc.starts_with(upper, prefix))
        mark("non_product_item", non_product)
    quantity, has_quantity = numbers(cmap.quantity)
    mark("non_finite_quantity", has_quantity & ~np.isfinite(quantity))
    with np.errstate(invalid="ignore"):
        mark("non_positive_quantity", quantity <= 0)
    price, has_price = numbers(cmap.price)
    mark("non_finite_price", has_price & ~np.isfinite(price))
    with np.errstate(invalid="ignore"):
        if rules.positive_price:
            mark("non_positive_price", price <= 0)
        else:
            mark("negative_price", price < 0)
    value, has_value = numbers(cmap.value)
    # Missing quantity counts as one unit; value and unit price complete each other.
    quantity = np.where(has_quantity, quantity, 1.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        value = np.where(has_value, value, quantity * price)
        price = np.where(has_price, price, value / quantity)
    # Written non-finite values, and finite ones whose product or quotient overflowed.
    mark("non_finite_value", (has_value & ~np.isfinite(value)) | np.isinf(value)
         | np.isinf(price))
    time_cells = data.column(cmap.time)
    if pa.types.is_string(time_cells.type) or pa.types.is_large_string(time_cells.type):
        mark("missing_time", flag(pc.equal(text_column(time_cells), "")))
    else:
        mark("missing_time", flag(pc.is_null(time_cells)))
    ts = time_column(time_cells, parser, reason == 0, cmap.time, table, lines)

    title = None
    if cmap.title and all(c in data.column_names for c in cmap.title):
        parts = [text_column(data.column(c)) for c in cmap.title]
        title = parts[0] if len(parts) == 1 else pc.utf8_trim_whitespace(
            pc.binary_join_element_wise(*parts, " "))
    return Classified(reason, user, item, ts, quantity, price, value, basket, title)
