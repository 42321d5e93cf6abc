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
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
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


class LinesNotSimple(Exception):
    """Internal: a CSV / TSV file whose rows are not one per line (a field holds a line break, or
    blank lines), found only at the end of a pass; the import runs again with exact lines."""


class RecordTooLong(Exception):
    """Internal: a record longer than Arrow's default block; the pass runs again with big
    blocks."""


class ChunkReader:
    """The main file as consecutive chunks of at most `chunk_rows` rows: (Arrow table, the
    1-based line of each row), in file order, holding one chunk (and one parser block) at a time.

    CSV / TSV are parsed by Arrow's streaming reader. With `exact_lines=False` row i is taken to
    sit on line i + 2 while a thread counts the file's line ends; when the pass ends and the
    count disagrees, LinesNotSimple asks for a second pass in which the row reader (slow, rare)
    numbers the rows. Parquet is read in row batches (row numbers), JSON lines by its row reader.
    `done` / `total` measure progress (bytes of the file as stored, or rows for Parquet)."""

    def __init__(self, table: Table, chunk_rows: int, *, exact_lines: bool = False,
                 big_blocks: bool = False) -> None:
        self.table = table
        self.chunk_rows = max(1, int(chunk_rows))
        self.exact_lines = exact_lines or table.fmt not in ("csv", "tsv")
        self.big_blocks = big_blocks
        self.rows_read = 0
        self.done = 0
        self.total = max(1, Path(table.path).stat().st_size)

    def __iter__(self) -> Iterator[tuple[pa.Table, np.ndarray]]:
        if self.table.fmt == "parquet":
            yield from self._parquet()
        elif self.table.fmt == "jsonl":
            yield from self._jsonl()
        else:
            yield from self._delimited()

    def _parquet(self) -> Iterator[tuple[pa.Table, np.ndarray]]:
        import pyarrow.parquet as pq

        from storage.sources import _times_as_seconds

        try:
            parquet = pq.ParquetFile(self.table.path)
            self.total = max(1, parquet.metadata.num_rows)
            for batch in parquet.iter_batches(batch_size=self.chunk_rows):
                data = pa.table({name: _times_as_seconds(pa.chunked_array([batch.column(i)]))
                                 for i, name in enumerate(batch.schema.names)})
                yield data, self._numbered(data.num_rows)
                self.done = self.rows_read
        except (pa.ArrowException, OSError) as exc:
            raise InputError(self.table.path, f"unreadable Parquet data ({exc})") from None

    def _jsonl(self) -> Iterator[tuple[pa.Table, np.ndarray]]:
        from storage.sources import _json_cell

        names = self.table.columns
        records = self.table.rows()
        while True:
            part = list(islice(records, self.chunk_rows))
            if not part:
                return
            lines = np.fromiter((line for line, _ in part), dtype=np.int64, count=len(part))
            data = pa.table({name: pa.array([_json_cell(values[i]) for _, values in part],
                                            pa.string()) for i, name in enumerate(names)})
            self.rows_read += len(part)
            yield data, lines

    def _numbered(self, n: int) -> np.ndarray:
        lines = np.arange(self.rows_read + 1, self.rows_read + n + 1, dtype=np.int64)
        self.rows_read += n
        return lines

    def _delimited(self) -> Iterator[tuple[pa.Table, np.ndarray]]:
        import pyarrow.csv as pacsv

        from storage.sources import _BIG_BLOCK, MAX_FIELD_BYTES, LineEndCounter, _is_gzip

        table = self.table
        counter = None if self.exact_lines else LineEndCounter(table.path, daemon=True)
        numbers = None if not self.exact_lines else (line for line, _ in table.rows())
        raw = pa.OSFile(str(table.path))
        stream = pa.CompressedInputStream(raw, "gzip") if _is_gzip(table.path) else raw
        options = {"block_size": _BIG_BLOCK} if self.big_blocks else {}
        pending: list[pa.RecordBatch] = []
        held = 0
        try:
            reader = pacsv.open_csv(
                stream,
                # One parsing thread: on a busy 2-core machine Arrow's thread pool measured
                # slower (4x Online Retail: 20 s against 14 s for the chunk loop).
                read_options=pacsv.ReadOptions(column_names=table.columns, skip_rows=1,
                                               use_threads=False, **options),
                parse_options=pacsv.ParseOptions(delimiter="\t" if table.fmt == "tsv" else ",",
                                                 newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in table.columns},
                    strings_can_be_null=False, quoted_strings_can_be_null=False),
            )
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    batch = None
                if batch is not None:
                    pending.append(batch)
                    held += batch.num_rows
                    self.done = raw.tell()
                while held >= self.chunk_rows or (batch is None and held):
                    data = pa.Table.from_batches(pending, schema=reader.schema)
                    take = min(held, self.chunk_rows)
                    part, rest = data.slice(0, take), data.slice(take)
                    pending = rest.to_batches() if rest.num_rows else []
                    held -= take
                    if _longest_cell(part) > MAX_FIELD_BYTES:
                        raise pa.ArrowInvalid("a field over the limit")  # named below
                    if numbers is None:
                        lines = np.arange(self.rows_read + 2, self.rows_read + take + 2,
                                          dtype=np.int64)
                    else:
                        lines = np.fromiter(islice(numbers, take), dtype=np.int64, count=take)
                    self.rows_read += take
                    yield part, lines
                if batch is None:
                    break
        except (pa.ArrowException, OSError) as exc:
            if "straddl" in str(exc) or "block size" in str(exc):
                if not self.big_blocks:
                    raise RecordTooLong from None
            for _ in table.rows():  # raises the precise InputError (line, field count, encoding)
                pass
            raise InputError(table.path, f"unreadable {table.fmt.upper()} ({exc})") from None
        finally:
            raw.close()
        if counter is not None and not counter.simple_lines(self.rows_read):
            raise LinesNotSimple


def _longest_cell(data: pa.Table) -> int:
    longest = 0
    for column in data.columns:
        if data.num_rows:
            longest = max(longest, pc.max(pc.binary_length(column)).as_py() or 0)
    return longest


_HASH_BASE = np.uint64(0x100000001B3)


def mix64(h: np.ndarray, column: np.ndarray) -> np.ndarray:
    """`h` with one more uint64 column folded in (splitmix64's finaliser); wraps on purpose."""
    with np.errstate(over="ignore"):
        h = (h ^ column) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(31)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
    return h


def text_hashes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A 64-bit hash of each cell's UTF-8 bytes (a missing cell hashes as ""), the same in every
    chunk: text keys of different chunks compare without a shared dictionary. A hash is only a
    filter; equal hashes are confirmed by comparing the values themselves."""
    array = pc.fill_null(column, "")
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], pa.string())
    array = pc.cast(array, pa.large_string())
    n = len(array)
    if not n:
        return np.zeros(0, dtype=np.uint64)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset: array.offset + n + 1]
    lengths = np.diff(offsets)
    sums = np.zeros(n, dtype=np.uint64)
    total = int(offsets[-1] - offsets[0])
    if total:
        data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]]
        starts = offsets[:-1] - offsets[0]
        within = np.arange(total, dtype=np.int64) - np.repeat(starts, lengths)
        with np.errstate(over="ignore"):
            powers = np.cumprod(np.full(int(lengths.max()), _HASH_BASE, dtype=np.uint64))
            products = (data.astype(np.uint64) + np.uint64(1)) * powers[within]
        filled = lengths > 0
        sums[filled] = np.add.reduceat(products, starts[filled])
    return mix64(sums, lengths.astype(np.uint64))
