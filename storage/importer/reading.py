"""Stage 1 of an import: the file's bytes as typed columns.

The file is hashed, parsed column-wise (Arrow, see storage/sources.py) and cleaned: control
characters (NUL, ESC, DEL, the C1 range; everything below U+0020 except tab, line feed and
carriage return) are STRIPPED from every text cell, once, right after parsing, so no id, title,
attribute or reject record ever holds them and the summary says how many cells were cleaned.
The helpers here turn a column into ids, text, numbers or Unix seconds; a cell that cannot be
read at all (a word in a number column, an unparseable time) is an InputError naming file, line
and column, and the import stops before writing anything.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storage.errors import InputError
from storage.sources import Table, open_table, read_columns
from storage.timeparse import TimeParseError, TimeParser

# RE2 syntax. Tab, LF and CR stay: a quoted multi-line description is legitimate text.
CONTROL_CHARACTERS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x{9F}]"


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


def strip_control_characters(data: pa.Table) -> tuple[pa.Table, int]:
    """`data` with control characters removed from every text column, and how many cells
    changed. Done once after parsing so every later stage sees the same clean text."""
    cleaned = 0
    columns = []
    for column in data.columns:
        if (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)) \
                and _may_hold_control_bytes(column):
            dirty = pc.match_substring_regex(column, CONTROL_CHARACTERS)
            count = pc.sum(pc.cast(dirty, pa.int64())).as_py() or 0
            if count:
                cleaned += count
                column = pc.replace_substring_regex(column, CONTROL_CHARACTERS, "")
        columns.append(column)
    return pa.table(columns, names=data.column_names), cleaned


def _may_hold_control_bytes(column: pa.ChunkedArray) -> bool:
    """A scan of the raw UTF-8 bytes, ~10x faster than the regex: almost every file is clean,
    and only a column that may not be pays for the regex. (A false "may" only costs time.)"""
    for chunk in column.chunks:
        buffer = chunk.buffers()[2]
        if buffer is None:
            continue
        raw = np.frombuffer(buffer, dtype=np.uint8)
        low = (raw < 0x20) & (raw != 0x09) & (raw != 0x0A) & (raw != 0x0D)
        if low.any() or (raw == 0x7F).any():
            return True
        # C1 controls U+0080-U+009F are 0xC2 0x80-0x9F in UTF-8.
        if ((raw[:-1] == 0xC2) & (raw[1:] >= 0x80) & (raw[1:] <= 0x9F)).any():
            return True
    return False


def check_columns(table: Table, wanted: dict[str, str], what: str) -> None:
    missing = [(f, c) for f, c in wanted.items() if c not in table.columns]
    if missing:
        field_name, column = missing[0]
        raise InputError(
            table.path,
            f"no column {column!r} for {what} {field_name!r}; columns found: "
            f"{', '.join(table.columns)}",
        )


def text_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
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


def id_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Ids as text; '17850.0' (a float written by a spreadsheet or pandas) becomes '17850'."""
    text = text_column(column)
    if not pc.any(pc.ends_with(text, ".0")).as_py():
        return text
    head = pc.utf8_slice_codeunits(text, 0, -2)
    integral = pc.and_(pc.ends_with(text, ".0"), pc.utf8_is_digit(head))
    return pc.if_else(integral, head, text)


def number_column(
    column: pa.ChunkedArray, name: str, table: Table, lines: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, bool "cell present"): an empty cell is NaN and not present, so a
    written "NaN", "inf" or "1e309" (present, not finite) can be told from a missing one.
    A cell that is not a number at all is an error."""
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        present = np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), dtype=bool)
        return column.to_numpy().astype(np.float64), present
    text = text_column(column)
    text = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    present = np.asarray(pc.is_valid(text).to_numpy(zero_copy_only=False), dtype=bool)
    try:
        return pc.cast(text, pa.float64()).to_numpy(), present
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


def time_column(
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
    encoded = pc.dictionary_encode(text_column(column)).combine_chunks()
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


@dataclass
class SideTable:
    """An items or users file: external id -> {column: text}, for the ids this import needs."""

    rows: dict[str, dict[str, str | None]]
    ids: set[str]


def load_side_table(
    path: Path, id_name: str, wanted: dict[str, str], what: str, needed: set[str] | None = None
) -> SideTable:
    table = open_table(path)
    check_columns(table, {"id": id_name, **wanted}, f"the {what} file's")
    data, _ = read_columns(table)
    data, _cleaned = strip_control_characters(data)
    ids = id_column(data.column(id_name)).to_pylist()
    columns = {name: text_column(data.column(name)).to_pylist() for name in table.columns}
    rows: dict[str, dict[str, str | None]] = {}
    for row, key in enumerate(ids):
        if key and (needed is None or key in needed):
            rows[key] = {name: (values[row] or None) for name, values in columns.items()}
    return SideTable(rows, {k for k in ids if k})
