"""Importing an interaction log into the workspace, with every input row accounted for.

An import is one transaction: the file is read column-wise (Arrow), every row is classified
(kept, or rejected with a reason and its line number) with vectorised operations, and the rows
are written in chunks inside a single `BEGIN IMMEDIATE` that commits only at the end. A bad
cell, a cancel or a crash rolls everything back, so the workspace stays exactly as it was.
Re-importing a file with the same content hash adds nothing.

Rejection reasons are checked in this order; a row gets the first that applies:
  cancellation, missing_user, missing_item, non_product_item, non_positive_quantity,
  non_positive_price (or negative_price), missing_time, duplicate.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.errors import ImportCancelled, InputError
from storage.sources import Table, open_table, read_columns
from storage.timeparse import TimeParseError, TimeParser
from storage.workspace import Workspace

ProgressFn = Callable[[int, int, str], None]  # (done, total, phase)
CancelFn = Callable[[], bool]

_FLUSH_ROWS = 50_000
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

    @property
    def rejected_total(self) -> int:
        return sum(self.rows_rejected.values())


def file_sha256(paths: list[Path] | tuple[Path, ...]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        try:
            with Path(path).open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise InputError(path, f"cannot be read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def _check_columns(table: Table, wanted: dict[str, str], what: str) -> None:
    missing = [(f, c) for f, c in wanted.items() if c not in table.columns]
    if missing:
        field_name, column = missing[0]
        raise InputError(
            table.path,
            f"no column {column!r} for {what} {field_name!r}; columns found: "
            f"{', '.join(table.columns)}",
        )


def _text_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Any column as trimmed text; missing cells become ""."""
    if not pa.types.is_string(column.type):
        if pa.types.is_large_string(column.type):
            column = pc.cast(column, pa.string())
        elif pa.types.is_floating(column.type):
            # 17850.0 -> "17850" (ids that went through a float column keep their integer look)
            integral = pc.equal(column, pc.floor(column))
            as_int = pc.cast(pc.if_else(integral, column, None), pa.int64(), safe=False)
            column = pc.coalesce(pc.cast(as_int, pa.string()), pc.cast(column, pa.string()))
        else:
            column = pc.cast(column, pa.string())
    return pc.fill_null(pc.utf8_trim_whitespace(column), "")


def _id_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Ids as text; '17850.0' (a float written by a spreadsheet or pandas) becomes '17850'."""
    text = _text_column(column)
    if not pc.any(pc.ends_with(text, ".0")).as_py():
        return text
    head = pc.utf8_slice_codeunits(text, 0, -2)
    integral = pc.and_(pc.ends_with(text, ".0"), pc.utf8_is_digit(head))
    return pc.if_else(integral, head, text)


def _number_column(
    column: pa.ChunkedArray, name: str, table: Table, lines: np.ndarray
) -> np.ndarray:
    """float64 array, NaN where the cell is empty; a cell that is not a number is an error."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return column.to_numpy().astype(np.float64)
    text = _text_column(column)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    try:
        return pc.cast(text, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        for row, value in enumerate(text.to_pylist()):
            if value is None:
                continue
            try:
                float(value)
            except ValueError:
                raise InputError(
                    table.path, f"not a number: {value!r}", line=int(lines[row]), column=name,
                    line_word=table.line_word,
                ) from None
        raise


def _time_column(
    column: pa.ChunkedArray,
    parser: TimeParser,
    needed: np.ndarray,
    name: str,
    table: Table,
    lines: np.ndarray,
) -> np.ndarray:
    """int64 Unix seconds for the rows in `needed` (others are 0). Each distinct cell is parsed
    once: an invoice's many lines share one time, so this is ~20k parses for ~500k rows."""
    if pa.types.is_integer(column.type) and parser.fmt in ("auto", "unix", "unix_ms"):
        values = column.to_numpy().astype(np.int64)
        return values // 1000 if parser.fmt == "unix_ms" else values
    fast = _iso_times_by_arrow(column, needed) if parser.fmt in ("auto", "iso") else None
    if fast is not None:
        return fast
    encoded = pc.dictionary_encode(_text_column(column)).combine_chunks()
    codes = encoded.indices.to_numpy()
    dictionary = encoded.dictionary.to_pylist()
    parsed = np.zeros(len(dictionary), dtype=np.int64)
    for code in np.unique(codes[needed]):
        try:
            parsed[code] = parser(dictionary[code])
        except TimeParseError as exc:
            row = int(np.flatnonzero(needed & (codes == code))[0])
            raise InputError(
                table.path, str(exc), line=int(lines[row]), column=name,
                line_word=table.line_word,
            ) from None
    return parsed[codes]


def _iso_times_by_arrow(column: pa.ChunkedArray, needed: np.ndarray) -> np.ndarray | None:
    """Arrow's C++ ISO 8601 parser, ~50x faster than Python's; None when any needed cell is not
    plain ISO (Unix numbers, fractions, mixed zones), and the careful path takes over."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    # Usually every cell is a time: parse the whole column without gathering the needed rows.
    for cells, rows in ((column, None), (column.take(pa.array(np.flatnonzero(needed))), needed)):
        for unit in (pa.timestamp("s"), pa.timestamp("s", tz="UTC")):
            try:
                parsed = pc.cast(pc.cast(cells, unit), pa.int64()).to_numpy()
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            if rows is None:
                return parsed
            out = np.zeros(len(column), dtype=np.int64)
            out[rows] = parsed
            return out
    return None


def _duplicate_rows(keys: list[pa.ChunkedArray | np.ndarray], n_existing: int) -> np.ndarray:
    """Bool per row: True where an earlier row (or one of the first `n_existing` rows, which
    stand for earlier imports) has the same key in every column.

    Text columns are dictionary-encoded, each row's codes are folded into one 64-bit hash, and
    rows are stable-sorted by hash; only rows whose hash repeats are compared column by column,
    so a hash collision can never drop a row."""
    columns = []
    for key in keys:
        if isinstance(key, np.ndarray) and key.dtype.kind == "f":
            # Compare bit patterns; every missing number (NaN) folds to the same pattern.
            folded = np.where(np.isnan(key), np.nan, key).astype(np.float64)
            columns.append(folded.view(np.uint64))
        elif isinstance(key, np.ndarray):
            columns.append(key.astype(np.int64).view(np.uint64))
        else:
            encoded = pc.dictionary_encode(pc.fill_null(key, "")).combine_chunks()
            columns.append(encoded.indices.to_numpy().astype(np.uint64))
    digest = np.zeros(len(columns[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            digest = (digest ^ column) * np.uint64(0x100000001B3)  # FNV-style mixing
            digest ^= digest >> np.uint64(29)
    order = np.argsort(digest, kind="stable")
    ranked = digest[order]
    repeats = np.flatnonzero(ranked[1:] == ranked[:-1]) + 1
    duplicate = np.zeros(len(digest), dtype=bool)
    if not len(repeats):
        return duplicate
    seen: dict[int, set[tuple]] = {}
    # Each run of equal hashes starts one place before its first repeat.
    for position in np.union1d(repeats - 1, repeats):
        row = int(order[position])
        exact = tuple(int(column[row]) for column in columns)
        bucket = seen.setdefault(int(ranked[position]), set())
        if exact in bucket:
            duplicate[row] = True
        else:
            bucket.add(exact)
    return duplicate


def _nullable(values: np.ndarray) -> list:
    """numpy floats -> list with None for NaN (SQL NULL)."""
    out = values.tolist()
    if np.isnan(values).any():
        out = [None if v != v else v for v in out]
    return out


def _group_time_order(group: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Permutation sorting rows by (group, ts, row): one stable sort of a packed int64 key,
    ~3x faster than a three-key lexsort (Unix seconds stay below 2**40 until year 36812)."""
    if not len(ts):
        return np.zeros(0, dtype=np.int64)
    key = (group.astype(np.int64) << np.int64(40)) | (ts.astype(np.int64) - np.int64(ts.min()))
    return np.argsort(key, kind="stable")


def _last_per_group(group: np.ndarray, ts: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """{group -> index of its latest row by (ts, row order)}, optionally among `mask` rows."""
    index = np.arange(len(group)) if mask is None else np.flatnonzero(mask)
    if not len(index):
        return {}
    order = index[_group_time_order(group[index], ts[index])]
    last = np.r_[group[order][1:] != group[order][:-1], True]
    return dict(zip(group[order][last].tolist(), order[last].tolist(), strict=True))


@dataclass
class _SideTable:
    """An items or users file: external id -> {column: text}, for the ids this import needs."""

    rows: dict[str, dict[str, str | None]]
    ids: set[str]


def _load_side_table(
    path: Path, id_column: str, wanted: dict[str, str], what: str, needed: set[str] | None = None
) -> _SideTable:
    table = open_table(path)
    _check_columns(table, {"id": id_column, **wanted}, f"the {what} file's")
    data, _ = read_columns(table)
    ids = _id_column(data.column(id_column)).to_pylist()
    columns = {name: _text_column(data.column(name)).to_pylist() for name in table.columns}
    rows: dict[str, dict[str, str | None]] = {}
    for row, key in enumerate(ids):
        if key and (needed is None or key in needed):
            rows[key] = {name: (values[row] or None) for name, values in columns.items()}
    return _SideTable(rows, {k for k in ids if k})


@dataclass
class _Classified:
    """The outcome of classifying every row: reason codes and the kept rows' fields."""

    reason: np.ndarray  # int8 per row, 0 = kept, else index into REASONS
    user: pa.ChunkedArray
    item: pa.ChunkedArray
    ts: np.ndarray
    quantity: np.ndarray
    price: np.ndarray
    value: np.ndarray
    basket: pa.ChunkedArray | None
    title: pa.ChunkedArray | None


REASONS = (
    "kept",
    "cancellation",
    "missing_user",
    "missing_item",
    "non_product_item",
    "non_positive_quantity",
    "non_positive_price",
    "negative_price",
    "missing_time",
    "duplicate",
)
_CODE = {name: code for code, name in enumerate(REASONS)}


def _classify(
    data: pa.Table,
    lines: np.ndarray,
    table: Table,
    spec: ImportSpec,
    parser: TimeParser,
    existing: pa.Table | None,
) -> _Classified:
    cmap, rules = spec.columns, spec.rules
    n = data.num_rows
    reason = np.zeros(n, dtype=np.int8)

    def mark(name: str, condition: np.ndarray) -> None:
        reason[(reason == 0) & condition] = _CODE[name]

    def flag(array: pa.ChunkedArray) -> np.ndarray:
        return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)

    basket = _id_column(data.column(cmap.basket)) if cmap.basket else None
    if basket is not None and rules.cancellation_prefix:
        mark("cancellation", flag(pc.starts_with(basket, rules.cancellation_prefix)))
    user = _id_column(data.column(cmap.user))
    mark("missing_user", flag(pc.equal(user, "")))
    item = _id_column(data.column(cmap.item))
    mark("missing_item", flag(pc.equal(item, "")))
    if rules.non_product_items or rules.non_product_prefixes:
        upper = pc.utf8_upper(item)
        non_product = flag(pc.is_in(upper, value_set=pa.array(sorted(rules.non_product_items),
                                                              pa.string())))
        for prefix in rules.non_product_prefixes:
            non_product |= flag(pc.starts_with(upper, prefix))
        mark("non_product_item", non_product)
    nan = np.full(n, np.nan)
    quantity = (_number_column(data.column(cmap.quantity), cmap.quantity, table, lines)
                if cmap.quantity else nan)
    mark("non_positive_quantity", quantity <= 0)
    price = _number_column(data.column(cmap.price), cmap.price, table, lines) if cmap.price else nan
    if rules.positive_price:
        mark("non_positive_price", price <= 0)
    else:
        mark("negative_price", price < 0)
    value = _number_column(data.column(cmap.value), cmap.value, table, lines) if cmap.value else nan
    time_column = data.column(cmap.time)
    if pa.types.is_string(time_column.type) or pa.types.is_large_string(time_column.type):
        mark("missing_time", flag(pc.equal(_text_column(time_column), "")))
    else:
        mark("missing_time", flag(pc.is_null(time_column)))
    ts = _time_column(time_column, parser, reason == 0, cmap.time, table, lines)

    # Duplicates: the same user, item, time, quantity, price and basket as an earlier row of this
    # file or of an earlier import; the first occurrence is kept.
    candidates = np.flatnonzero(reason == 0)
    n_old = existing.num_rows if existing is not None else 0
    no_basket = pa.chunked_array([pa.nulls(n, pa.string())])

    def key(name: str, column: pa.ChunkedArray | np.ndarray):
        """This import's candidates, after the earlier imports' keys when there are any."""
        if isinstance(column, np.ndarray):
            mine = column[candidates]
            if existing is None:
                return mine
            old = existing.column(name).to_numpy(zero_copy_only=False).astype(mine.dtype)
            return np.concatenate([old, mine])
        if existing is None:
            # Integer codes of the whole column, then gathered: cheaper than gathering strings.
            encoded = pc.dictionary_encode(pc.fill_null(column, "")).combine_chunks()
            return encoded.indices.to_numpy()[candidates]
        mine = column.take(pa.array(candidates))
        return pa.chunked_array(existing.column(name).chunks + mine.chunks, pa.string())

    duplicate = _duplicate_rows(
        [key("user", user), key("item", item), key("ts", ts), key("quantity", quantity),
         key("price", price), key("basket", basket if basket is not None else no_basket)],
        n_old,
    )[n_old:]
    reason[candidates[duplicate]] = _CODE["duplicate"]

    title = None
    if cmap.title and all(c in data.column_names for c in cmap.title):
        parts = [_text_column(data.column(c)) for c in cmap.title]
        title = parts[0] if len(parts) == 1 else pc.utf8_trim_whitespace(
            pc.binary_join_element_wise(*parts, " "))
    # Missing quantity counts as one unit; value and unit price complete each other.
    quantity = np.where(np.isnan(quantity), 1.0, quantity)
    value = np.where(np.isnan(value), quantity * price, value)
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(np.isnan(price), value / quantity, price)
    return _Classified(reason, user, item, ts, quantity, price, value, basket, title)


def _existing_keys(conn) -> pa.Table | None:
    """Keys of the interactions already in the workspace, to reject re-imported rows."""
    if not conn.execute("SELECT 1 FROM interactions LIMIT 1").fetchone():
        return None
    rows = conn.execute(
        "SELECT u.external_id, i.external_id, x.ts, x.quantity, x.price, x.basket "
        "FROM interactions x JOIN users u ON u.id = x.user_id JOIN items i ON i.id = x.item_id"
    ).fetchall()
    names = ["user", "item", "ts", "quantity", "price", "basket"]
    types = [pa.string(), pa.string(), pa.int64(), pa.float64(), pa.float64(), pa.string()]
    return pa.table({name: pa.array([r[i] for r in rows], type) for i, (name, type)
                     in enumerate(zip(names, types, strict=True))})


def _assign_ids(conn, table: str, keys: pa.ChunkedArray) -> tuple[np.ndarray, dict[str, int]]:
    """Integer ids for external ids (existing ones reused); returns per-row ids and the new ones."""
    known = dict(conn.execute(f"SELECT external_id, id FROM {table}"))
    next_id = (conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0] or 0) + 1
    distinct = pc.unique(keys)
    new: dict[str, int] = {}
    ids = []
    for key in distinct.to_pylist():
        found = known.get(key)
        if found is None:
            found = new[key] = next_id
            next_id += 1
        ids.append(found)
    position = pc.index_in(keys, value_set=distinct).to_numpy()
    return np.asarray(ids, dtype=np.int64)[position], new


def run_import(
    ws: Workspace,
    spec: ImportSpec,
    progress: ProgressFn | None = None,
    should_cancel: CancelFn | None = None,
) -> ImportSummary:
    """Import `spec.path` into `ws` atomically; see the module docstring for the rules."""
    started = time.perf_counter()
    report = progress or (lambda done, total, phase: None)
    table = open_table(spec.path, spec.fmt)
    cmap = spec.columns
    main_fields = {f: getattr(cmap, f) for f in ("user", "item", "time", "price", "quantity",
                                                   "value", "basket") if getattr(cmap, f)}
    _check_columns(table, main_fields, "the mapped field")
    # Descriptive fields may come from the main file or from the items / users file.
    item_fields = {k: v for k, v in (("category", cmap.category), ("brand", cmap.brand)) if v}
    item_fields.update({f"title[{i}]": c for i, c in enumerate(cmap.title)})
    item_fields.update({f"item.{k}": v for k, v in cmap.item_attributes.items()})
    user_fields = {f"user.{k}": v for k, v in cmap.user_attributes.items()}
    item_side_fields = {k: v for k, v in item_fields.items() if v not in table.columns}
    user_side_fields = {k: v for k, v in user_fields.items() if v not in table.columns}
    if spec.items_path is None:
        _check_columns(table, item_fields, "the mapped field")
    if spec.users_path is None:
        _check_columns(table, user_fields, "the mapped field")

    digest = file_sha256(spec.hash_paths or (spec.path,))
    earlier = ws.conn.execute(
        "SELECT id FROM imports WHERE sha256 = ? ORDER BY id LIMIT 1", (digest,)
    ).fetchone()
    if earlier is not None:
        summary = import_summary(ws, earlier[0])
        summary.already_imported = True
        return summary
    try:
        parser = TimeParser(spec.time_format)
    except ValueError as exc:
        raise InputError(spec.path, str(exc)) from None

    report(0, 1, "reading")
    data, lines = read_columns(table)
    if data.num_rows == 0:
        raise InputError(spec.path, "no data rows after the header")
    if should_cancel is not None and should_cancel():
        raise ImportCancelled("import cancelled; the workspace is unchanged")
    report(0, 1, "checking rows")
    rows = _classify(data, lines, table, spec, parser, _existing_keys(ws.conn))
    kept = np.flatnonzero(rows.reason == 0)
    kept_items = set(pc.unique(rows.item.take(pa.array(kept))).to_pylist())
    items_side = users_side = None
    if spec.items_path is not None:
        items_side = _load_side_table(spec.items_path, cmap.item, item_side_fields,
                                      "mapped field", kept_items)
    if spec.users_path is not None:
        users_side = _load_side_table(spec.users_path, cmap.user, user_side_fields,
                                      "mapped field")

    with ws.transaction(check_foreign_keys=False) as conn:
        import_id = conn.execute(
            "INSERT INTO imports (file, sha256, preset, options, rows_read, rows_kept, "
            "imported_at) VALUES (?, ?, ?, ?, 0, 0, ?)",
            (
                str(Path(spec.path).resolve()),
                digest,
                spec.preset,
                json.dumps({
                    "map": cmap.as_dict(),
                    "time_format": spec.time_format,
                    "format": table.fmt,
                    "items": str(spec.items_path) if spec.items_path else None,
                    "users": str(spec.users_path) if spec.users_path else None,
                }),
                datetime.now(UTC).isoformat(timespec="seconds"),
            ),
        ).lastrowid
        picked = pa.array(kept)
        user_keys, item_keys = rows.user.take(picked), rows.item.take(picked)
        user_ids, new_users = _assign_ids(conn, "users", user_keys)
        item_ids, new_items = _assign_ids(conn, "items", item_keys)
        entities = _Entities(rows, data, kept, user_keys, item_keys, user_ids, item_ids)
        unused = _write_items(conn, entities, cmap, items_side, import_id)
        _write_users(conn, entities, cmap, users_side, import_id)
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB page cache for the bulk write
        rebuild = _drop_indexes_for_bulk_load(conn, len(kept))
        _write_rows(conn, import_id, rows, data, lines, kept, user_ids, item_ids, report,
                    should_cancel)
        for statement in rebuild:
            conn.execute(statement)
        counts = Counter(rows.reason.tolist())
        rejected = {REASONS[code]: n for code, n in sorted(counts.items()) if code}
        seconds = time.perf_counter() - started
        conn.execute(
            "UPDATE imports SET rows_read=?, rows_kept=?, rows_rejected=?, users_added=?, "
            "items_added=?, ts_min=?, ts_max=?, seconds=? WHERE id=?",
            (
                data.num_rows, len(kept), json.dumps(dict(sorted(rejected.items()))),
                len(new_users), len(new_items),
                int(rows.ts[kept].min()) if len(kept) else None,
                int(rows.ts[kept].max()) if len(kept) else None,
                round(seconds, 3), import_id,
            ),
        )
    summary = import_summary(ws, import_id)
    summary.catalogue_items_unused = unused
    return summary


_CHUNK = 100_000


def _drop_indexes_for_bulk_load(conn, adding: int) -> list[str]:
    """When an import at least doubles the interactions, building their indexes once afterwards
    is cheaper than updating them row by row: drop them now (inside the transaction, so a
    rollback restores them) and return the statements that rebuild them."""
    existing = conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
    if adding < max(existing, 10_000):
        return []
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'interactions' "
        "AND sql IS NOT NULL"
    ).fetchall()
    for name, _sql in indexes:
        conn.execute(f"DROP INDEX [{name}]")
    return [sql for _name, sql in indexes]


def _write_rows(conn, import_id, rows, data, lines, kept, user_ids, item_ids, report,
                should_cancel) -> None:
    """Insert kept interactions and rejects in chunks, reporting progress and honouring cancel."""
    rejected = np.flatnonzero(rows.reason != 0)
    total = len(kept) + len(rejected)
    done = 0

    def step(count: int) -> None:
        nonlocal done
        done += count
        if should_cancel is not None and should_cancel():
            raise ImportCancelled("import cancelled; the workspace is unchanged")
        report(done, total, "writing")

    # Rows are stored in the order of the (user_id, ts) index: a user's timeline is then a few
    # adjacent pages, and index updates (or the rebuild) touch pages in order.
    order = _group_time_order(user_ids, rows.ts[kept])
    kept, user_ids, item_ids = kept[order], user_ids[order], item_ids[order]
    basket = rows.basket
    for start in range(0, len(kept), _CHUNK):
        part = kept[start : start + _CHUNK]
        n = len(part)
        conn.executemany(
            "INSERT INTO interactions (user_id, item_id, ts, quantity, price, value, basket, "
            f"import_id, line) VALUES (?, ?, ?, ?, ?, ?, ?, {int(import_id)}, ?)",
            zip(
                user_ids[start : start + n].tolist(),
                item_ids[start : start + n].tolist(),
                rows.ts[part].tolist(),
                _nullable(rows.quantity[part]),
                _nullable(rows.price[part]),
                _nullable(rows.value[part]),
                basket.take(pa.array(part)).to_pylist() if basket is not None else [None] * n,
                lines[part].tolist(),
                strict=True,
            ),
        )
        step(n)
    if len(rejected):
        codes = rows.reason[rejected]
        reject_lines = lines[rejected]
        # Runs of consecutive lines that share a reason are stored as one row (first, last).
        starts = np.flatnonzero(np.r_[True, (np.diff(reject_lines) != 1)
                                      | (codes[1:] != codes[:-1])])
        ends = np.r_[starts[1:], len(rejected)] - 1
        picked = pa.array(rejected[starts])
        raw = pc.binary_join_element_wise(
            *[_text_column(data.column(c).take(picked)) for c in data.column_names], ","
        ).to_pylist()
        conn.executemany(
            "INSERT INTO rejects (import_id, reason, line, last_line, raw) "
            f"VALUES ({int(import_id)}, ?, ?, ?, ?)",
            zip([REASONS[c] for c in codes[starts].tolist()], reject_lines[starts].tolist(),
                reject_lines[ends].tolist(), raw, strict=True),
        )
        step(len(rejected))


@dataclass
class _Entities:
    """Kept rows seen per user and per item, for writing users and items."""

    rows: _Classified
    data: pa.Table
    kept: np.ndarray
    user_keys: pa.ChunkedArray
    item_keys: pa.ChunkedArray
    user_ids: np.ndarray
    item_ids: np.ndarray


def _item_text(title: str | None, category: str | None, brand: str | None) -> str:
    parts = [title or ""]
    if category:
        parts.append(f"Category: {category}")
    if brand:
        parts.append(f"Brand: {brand}")
    return ". ".join(p for p in parts if p)


def _cells(data: pa.Table, columns: list[str | None], rows: np.ndarray) -> dict[str, list]:
    """Text of the given columns at the given rows (one vectorised take per column)."""
    picked = pa.array(rows, pa.int64())
    return {
        column: [v or None for v in _text_column(data.column(column).take(picked)).to_pylist()]
        for column in dict.fromkeys(columns)
        if column and column in data.column_names
    }


def _write_items(conn, ent: _Entities, cmap: ColumnMap, side: _SideTable | None,
                 import_id: int) -> int:
    """Insert new items and refresh the text of known ones (the latest row wins)."""
    rows, kept = ent.rows, ent.kept
    ts = rows.ts[kept]
    latest = _last_per_group(ent.item_ids, ts)
    latest_titled = latest
    if rows.title is not None:
        has_title = np.asarray(pc.not_equal(rows.title, "").to_numpy(zero_copy_only=False),
                               dtype=bool)[kept]
        if not has_title.all():
            latest_titled = _last_per_group(ent.item_ids, ts, has_title)
    existing = {
        r[0]: r[1:] for r in conn.execute(
            "SELECT id, title_ts, title, category, brand, price, attributes FROM items")
    }
    side_title = [c for c in cmap.title if c not in ent.data.column_names]
    item_ids = list(latest)
    positions = np.array([latest[i] for i in item_ids], dtype=np.int64)
    keys = ent.item_keys.take(pa.array(positions)).to_pylist()
    cells = _cells(ent.data, [cmap.category, cmap.brand, *cmap.item_attributes.values()],
                   kept[positions])
    titled = np.array([latest_titled.get(i, -1) for i in item_ids], dtype=np.int64)
    titles = [None] * len(item_ids)
    if rows.title is not None:
        found_title = titled >= 0
        taken = rows.title.take(pa.array(kept[titled[found_title]])).to_pylist()
        for slot, title in zip(np.flatnonzero(found_title).tolist(), taken, strict=True):
            titles[slot] = title or None
    out = []
    for slot, item_id in enumerate(item_ids):
        key, title = keys[slot], titles[slot]
        when = int(ts[positions[slot]])
        category = cells[cmap.category][slot] if cmap.category in cells else None
        brand = cells[cmap.brand][slot] if cmap.brand in cells else None
        price = rows.price[kept[positions[slot]]]
        price = None if price != price else float(price)
        attrs: dict[str, object] = {
            k: cells[c][slot] for k, c in cmap.item_attributes.items() if c in cells
        }
        found = side.rows.get(key) if side is not None else None
        if found is not None:
            if side_title:
                title = " ".join(t for t in (found.get(c) for c in side_title) if t) or title
            if cmap.category and cmap.category not in ent.data.column_names:
                category = found.get(cmap.category)
            if cmap.brand and cmap.brand not in ent.data.column_names:
                brand = found.get(cmap.brand)
            attrs.update({k: found.get(c) for k, c in cmap.item_attributes.items()
                          if c not in ent.data.column_names})
        attrs = {k: v for k, v in attrs.items() if v is not None}
        old = existing.get(item_id)
        if old is not None:
            old_ts, old_title, old_category, old_brand, old_price, old_attrs = old
            if old_ts is not None and old_ts > when:  # an older file keeps the newer text
                when, title, category, brand, price = (old_ts, old_title, old_category,
                                                       old_brand, old_price)
            attrs = {**json.loads(old_attrs or "{}"), **attrs}
        title = title or key
        out.append((item_id, key, title, category, brand, price, _item_text(title, category, brand),
                    json.dumps(attrs, default=str), when, import_id))
    conn.executemany(
        "INSERT INTO items (id, external_id, title, category, brand, price, text, attributes, "
        "title_ts, import_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET title=excluded.title, category=excluded.category, "
        "brand=excluded.brand, price=excluded.price, text=excluded.text, "
        "attributes=excluded.attributes, title_ts=excluded.title_ts",
        out,
    )
    if side is None:
        return 0
    return len(side.ids - set(ent.item_keys.to_pylist()))


def _write_users(conn, ent: _Entities, cmap: ColumnMap, side: _SideTable | None,
                 import_id: int) -> None:
    """Insert new users; attributes come from the latest row and from the users file."""
    kept = ent.kept
    latest = _last_per_group(ent.user_ids, ent.rows.ts[kept])
    existing = dict(conn.execute("SELECT id, attributes FROM users"))
    in_main = {k: c for k, c in cmap.user_attributes.items() if c in ent.data.column_names}
    in_side = {k: c for k, c in cmap.user_attributes.items() if c not in ent.data.column_names}
    user_ids = list(latest)
    positions = np.array([latest[u] for u in user_ids], dtype=np.int64)
    keys = ent.user_keys.take(pa.array(positions)).to_pylist()
    cells = _cells(ent.data, list(in_main.values()), kept[positions])
    out = []
    for slot, user_id in enumerate(user_ids):
        key = keys[slot]
        attrs: dict[str, object] = {k: cells[c][slot] for k, c in in_main.items() if c in cells}
        found = side.rows.get(key) if side is not None else None
        if found is not None:
            # With no user.X mapping, every column of the users file is an attribute.
            pick = in_side or ({} if cmap.user_attributes else
                               {c: c for c in found if c != cmap.user})
            attrs.update({k: found.get(c) for k, c in pick.items()})
        attrs = {k: v for k, v in attrs.items() if v is not None}
        old = existing.get(user_id)
        if old is not None:
            attrs = {**json.loads(old or "{}"), **attrs}
        out.append((user_id, key, json.dumps(attrs, default=str), import_id))
    conn.executemany(
        "INSERT INTO users (id, external_id, attributes, import_id) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET attributes=excluded.attributes",
        out,
    )



def import_summary(ws: Workspace, import_id: int) -> ImportSummary:
    row = ws.conn.execute(
        "SELECT id, file, preset, sha256, rows_read, rows_kept, rows_rejected, users_added, "
        "items_added, ts_min, ts_max, seconds FROM imports WHERE id = ?",
        (import_id,),
    ).fetchone()
    users_total = ws.conn.execute("SELECT count(*) FROM users").fetchone()[0]
    items_total = ws.conn.execute("SELECT count(*) FROM items").fetchone()[0]
    return ImportSummary(
        import_id=row[0],
        file=row[1],
        preset=row[2],
        sha256=row[3],
        rows_read=row[4],
        rows_kept=row[5],
        rows_rejected=json.loads(row[6] or "{}"),
        users_added=row[7] or 0,
        items_added=row[8] or 0,
        users_total=users_total,
        items_total=items_total,
        ts_min=row[9],
        ts_max=row[10],
        seconds=row[11] or 0.0,
    )
