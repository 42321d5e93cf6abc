"""What an import is asked to do (column mapping, reject rules, the spec) and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Fields a --map may name. "title" may join several columns: title=type+size.
MAP_FIELDS = ("user", "item", "time", "title", "category", "brand", "price", "quantity",
              "value", "basket")
REQUIRED_FIELDS = ("user", "item", "time")


@dataclass(frozen=True)
class ColumnMap:
    """Which input column holds each field; `user.X=COL` / `item.X=COL` add attributes."""

    user: str
    item: str
    time: str
    title: tuple[str, ...] = ()
    category: str | None = None
    brand: str | None = None
    price: str | None = None
    quantity: str | None = None
    value: str | None = None
    basket: str | None = None
    user_attributes: dict[str, str] = field(default_factory=dict)
    item_attributes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_pairs(cls, pairs: list[str] | dict[str, str]) -> ColumnMap:
        """Build from `["user=CustomerID", "time=ts", "user.country=Country", ...]`."""
        items = pairs.items() if isinstance(pairs, dict) else [_split_pair(p) for p in pairs]
        fields: dict[str, object] = {}
        user_attrs: dict[str, str] = {}
        item_attrs: dict[str, str] = {}
        for key, column in items:
            if key.startswith("user."):
                user_attrs[key[5:]] = column
            elif key.startswith("item."):
                item_attrs[key[5:]] = column
            elif key == "title":
                fields["title"] = tuple(c for c in column.split("+") if c)
            elif key in MAP_FIELDS:
                fields[key] = column
            else:
                raise ValueError(
                    f"--map {key}={column}: unknown field {key!r}; fields are "
                    f"{', '.join(MAP_FIELDS)}, user.ATTRIBUTE and item.ATTRIBUTE"
                )
        missing = [f for f in REQUIRED_FIELDS if f not in fields]
        if missing:
            raise ValueError(
                f"the column mapping needs {', '.join(missing)} "
                f"(e.g. --map {missing[0]}=COLUMN)"
            )
        return cls(**fields, user_attributes=user_attrs, item_attributes=item_attrs)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, str]:
        out = {
            k: getattr(self, k) for k in MAP_FIELDS if k != "title" and getattr(self, k)
        }
        if self.title:
            out["title"] = "+".join(self.title)
        out.update({f"user.{k}": v for k, v in self.user_attributes.items()})
        out.update({f"item.{k}": v for k, v in self.item_attributes.items()})
        return out


def _split_pair(pair: str) -> tuple[str, str]:
    key, sep, column = pair.partition("=")
    if not sep or not key.strip() or not column.strip():
        raise ValueError(f"--map {pair!r}: expected FIELD=COLUMN, e.g. --map user=CustomerID")
    return key.strip(), column.strip()


@dataclass(frozen=True)
class RejectRules:
    """Dataset-specific reasons for a row not to be a purchase."""

    cancellation_prefix: str | None = None  # basket ids starting with it are cancellations
    non_product_items: frozenset[str] = frozenset()  # compared upper-cased
    non_product_prefixes: tuple[str, ...] = ()  # compared upper-cased
    positive_price: bool = False  # True: price <= 0 is rejected; False: only price < 0


@dataclass(frozen=True)
class ImportSpec:
    path: Path
    preset: str
    columns: ColumnMap
    rules: RejectRules = RejectRules()
    time_format: str = "auto"
    fmt: str | None = None
    items_path: Path | None = None
    users_path: Path | None = None
    # Where the main file is one of several tables (Complete Journey), the hash covers them all.
    hash_paths: tuple[Path, ...] = ()


@dataclass
class ImportSummary:
    import_id: int
    file: str
    preset: str
    sha256: str
    rows_read: int
    rows_kept: int
    rows_rejected: dict[str, int]
    users_added: int
    items_added: int
    users_total: int
    items_total: int
    ts_min: int | None
    ts_max: int | None
    seconds: float
    already_imported: bool = False
    catalogue_items_unused: int = 0  # items-file rows that no kept interaction refers to
    # Text cells from which control characters (NUL, ESC, ...) were removed; see reading.py.
    cells_cleaned: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rows_rejected.values())
