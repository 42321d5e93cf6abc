"""Reading input tables (CSV, TSV, JSON lines, Parquet; gzip or plain) as numbered rows.

Every reader yields `(line, values)` where `line` is the 1-based line of the file (CSV, JSON
lines; the header is line 1) or the 1-based row (Parquet), and `values` is aligned with
`columns`. Problems raise `InputError` naming the file and line, never a bare traceback.
(About 400 lines: every format's reader sits beside the error paths that name its lines.)
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from storage.errors import InputError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

FORMATS = ("csv", "tsv", "jsonl", "parquet")
_CHUNK_ROWS = 65_536

# The longest field a CSV / TSV cell may hold. Arrow reads in blocks of 1 MiB and refuses a
# record that straddles two blocks, so a file with a longer field is read again with blocks of
# _BIG_BLOCK; a field over MAX_FIELD_BYTES is refused naming its file, line and column.
MAX_FIELD_BYTES = 1 << 24
_BIG_BLOCK = 1 << 26
csv.field_size_limit(MAX_FIELD_BYTES)


@dataclass
class Table:
    """An open input table whose header has been read; `rows()` iterates the records."""

    path: Path
    fmt: str
    columns: list[str]
    rows: Callable[[], Iterator[tuple[int, list]]]
    line_word: str = "line"  # how error messages call a record: "line" or "row"


def detect_format(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".gz", ".gzip"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".tsv", ".tab")):
        return "tsv"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return "csv"


def open_table(path: Path, fmt: str | None = None) -> Table:
    """Open `path` for reading; checks existence, emptiness, encoding of the header, columns."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, expected a file")
    if path.stat().st_size == 0:
        raise InputError(path, "the file is empty")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise InputError(path, f"unknown format {fmt!r} (use one of {', '.join(FORMATS)})")
    if fmt == "parquet":
        return _open_parquet(path)
    return _open_text(path, fmt)


def _is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_binary(path: Path) -> io.BufferedIOBase:
    raw = path.open("rb")
    if _is_gzip(path):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw


def _read_errors(path: Path, line: int | None) -> Callable[[Exception], InputError]:
    def convert(exc: Exception) -> InputError:
        if isinstance(exc, EOFError):
            return InputError(
                path, "the gzip stream is truncated (the file ends early); re-download it",
                line=line,
            )
        if isinstance(exc, gzip.BadGzipFile | zlib.error):
            return InputError(path, f"corrupt gzip data ({exc})", line=line)
        return InputError(path, f"cannot be read ({exc})", line=line)

    return convert


def _first_bad_utf8_line(path: Path) -> tuple[int, str]:
    """Slow path for the error message only: find the first line that is not UTF-8."""
    binary = _open_binary(path)
    with binary:
        for number, raw in enumerate(binary, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = raw[exc.start : exc.end]
                return number, f"byte {bad!r} at character {exc.start + 1}"
    return 0, "unknown position"


def _open_text(path: Path, fmt: str) -> Table:
    delimiter = "\t" if fmt == "tsv" else ","

    def text_stream() -> io.TextIOWrapper:
        return io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", errors="strict",
                                newline="")

    # Read the header eagerly so that a bad header or a wrong --map fails before any writing.
    binary = _open_binary(path)
    with binary:
        try:
            head = binary.readline()
        except (EOFError, OSError, zlib.error) as exc:
            raise _read_errors(path, 1)(exc) from None
    try:
        first = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text; re-save the file as UTF-8", line=1) from None
    if not first.strip():
        raise InputError(path, "the file is empty (no header line)")
    if fmt == "jsonl":
        columns = _jsonl_columns(path, first)
    else:
        columns = next(csv.reader([first], delimiter=delimiter))
        columns = [c.strip() for c in columns]
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        if dupes:
            raise InputError(path, f"the header names a column twice: {', '.join(dupes)}", line=1)
        if any(not c for c in columns):
            raise InputError(path, "the header has an empty column name", line=1)

    def rows() -> Iterator[tuple[int, list]]:
        stream = text_stream()
        line = end = 1  # the current record's first line; the previous record's last line
        with stream:
            try:
                if fmt == "jsonl":
                    yield from _jsonl_rows(path, stream, columns)
                    return
                reader = csv.reader(stream, delimiter=delimiter)
                next(reader)  # header, already parsed
                width = len(columns)
                for values in reader:
                    # A record is named by its FIRST line: a quoted field may span lines 3-5.
                    line, end = end + 1, reader.line_num
                    if len(values) != width:
                        if not values:
                            continue  # a blank line is not a row
                        raise InputError(
                            path,
                            f"expected {width} fields, found {len(values)}",
                            line=line,
                        )
                    yield line, values
            except UnicodeDecodeError:
                bad_line, where = _first_bad_utf8_line(path)
                raise InputError(
                    path, f"not UTF-8 text ({where}); re-save the file as UTF-8", line=bad_line
                ) from None
            except csv.Error as exc:
                if "field larger than field limit" in str(exc):
                    raise _oversized_field(path, delimiter, columns, end + 1) from None
                raise InputError(path, f"malformed CSV ({exc})", line=end + 1) from None
            except (EOFError, OSError, zlib.error) as exc:
                raise _read_errors(path, line)(exc) from None

    return Table(path, fmt, columns, rows)


def _oversized_field(path: Path, delimiter: str, columns: list[str], line: int) -> InputError:
    """The error for a record (starting at `line`) with a field over MAX_FIELD_BYTES: read it
    again without the limit, only to name the column."""
    limit = csv.field_size_limit()
    csv.field_size_limit(sys.maxsize)
    try:
        with io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream, delimiter=delimiter)
            end = 0
            for values in reader:
                first, end = end + 1, reader.line_num
                if first < line:
                    continue
                sizes = [len(v.encode("utf-8")) for v in values]
                where = max(range(len(sizes)), key=sizes.__getitem__) if sizes else 0
                name = columns[where] if where < len(columns) else f"#{where + 1}"
                return InputError(
                    path, f"a field of {sizes[where] / 2**20:.1f} MiB; the limit is "
                    f"{MAX_FIELD_BYTES >> 20} MiB per field", line=first, column=name,
                )
    except (csv.Error, UnicodeDecodeError, OSError, EOFError, zlib.error):
        pass
    finally:
        csv.field_size_limit(limit)
    return InputError(path, f"a field over {MAX_FIELD_BYTES >> 20} MiB", line=line)


def _jsonl_columns(path: Path, first: str) -> list[str]:
    try:
        record = json.loads(first)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not a JSON object ({exc.msg})", line=1) from None
    if not isinstance(record, dict):
        raise InputError(path, "each line must be a JSON object", line=1)
    return list(record)


def _jsonl_rows(
    path: Path, stream: io.TextIOWrapper, columns: list[str]
) -> Iterator[tuple[int, list]]:
    """JSON lines: the first object's keys are the columns; a missing key reads as empty."""
    for line, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"not a JSON object ({exc.msg})", line=line) from None
        if not isinstance(record, dict):
            raise InputError(path, "each line must be a JSON object", line=line)
        yield line, [record.get(c) for c in columns]


def _open_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(path, f"not a Parquet file ({exc})") from None
    columns = list(schema.names)

    def rows() -> Iterator[tuple[int, list]]:
        row = 0
        try:
            for batch in parquet.iter_batches(batch_size=_CHUNK_ROWS):
                values = [
                    _times_as_seconds(batch.column(i)).to_pylist()
                    for i in range(batch.num_columns)
                ]
                for record in zip(*values, strict=True):
                    row += 1
                    yield row, list(record)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(
                path, f"unreadable Parquet data ({exc})", line=row + 1, line_word="row"
            ) from None

    return Table(path, "parquet", columns, rows, line_word="row")


def _count_line_ends(path: Path) -> tuple[int, bool]:
    """(number of b"\\n", whether the file ends with one), streaming through any gzip layer."""
    binary = _open_binary(path)
    count, last = 0, b""
    with binary:
        try:
            while chunk := binary.read(1 << 20):
                count += chunk.count(b"\n")
                last = chunk[-1:]
        except (EOFError, OSError, zlib.error) as exc:
            raise _read_errors(path, None)(exc) from None
    return count, last == b"\n"



class LineEndCounter:
    """Counts a file's line ends in a background thread while Arrow parses it, to tell whether
    data row i sits on line i + 2 (no blank lines, no line breaks inside fields)."""

    def __init__(self, path: Path, *, daemon: bool = False) -> None:
        self.path = path
        self._counted: dict[str, object] = {}
        self._thread = threading.Thread(target=self._count, name="count-lines", daemon=daemon)
        self._thread.start()

    def _count(self) -> None:
        try:
            self._counted["ends"] = _count_line_ends(self.path)
        except InputError as exc:
            self._counted["error"] = exc

    def join(self) -> None:
        self._thread.join()

    def simple_lines(self, rows: int) -> bool:
        """Waits for the count; True when `rows` data rows after the header fill exactly the
        file's lines (raises the counter's InputError if the file could not be read)."""
        self._thread.join()
        if "error" in self._counted:
            raise self._counted["error"]  # type: ignore[misc]
        ends, trailing = self._counted["ends"]  # type: ignore[misc]
        return ends + (0 if trailing else 1) == rows + 1

def _line_numbers_by_scan(table: Table) -> np.ndarray:
    """Exact line numbers from the row reader (when fields hold line breaks or lines are blank)."""
    import numpy as np

    return np.fromiter((line for line, _ in table.rows()), dtype=np.int64)


def read_columns(table: Table) -> tuple[pa.Table, np.ndarray]:
    """The whole table as Arrow columns plus each row's line number.

    CSV / TSV are parsed by Arrow's multi-threaded reader with every column as text. When Arrow
    rejects the file, the row reader runs over it to find and name the exact line and problem.
    Parquet keeps its types (times as Unix seconds); JSON lines become text columns.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if table.fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            data = pq.read_table(table.path)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(table.path, f"unreadable Parquet data ({exc})") from None
        data = pa.table({name: _times_as_seconds(data.column(name)) for name in data.column_names})
        return data, np.arange(1, data.num_rows + 1, dtype=np.int64)
    if table.fmt == "jsonl":
        lines, columns = [], [[] for _ in table.columns]
        for line, values in table.rows():
            lines.append(line)
            for column, value in zip(columns, values, strict=True):
                column.append(_json_cell(value))
        data = pa.table({n: pa.array(c, pa.string()) for n, c in zip(table.columns, columns,
                                                                       strict=True)})
        return data, np.asarray(lines, dtype=np.int64)

    # Arrow parses from its own (de)compressing stream while a second thread counts line ends,
    # which tells whether row i sits on line i + 2 (no blank lines, no line breaks in fields).
    counter = LineEndCounter(table.path)
    delimiter = "\t" if table.fmt == "tsv" else ","
    compression = "gzip" if _is_gzip(table.path) else None

    def parse(block_size: int | None) -> pa.Table:
        options = {"block_size": block_size} if block_size else {}
        return pacsv.read_csv(
            pa.input_stream(str(table.path), compression=compression),
            read_options=pacsv.ReadOptions(column_names=table.columns, skip_rows=1, **options),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in table.columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        try:
            data = parse(None)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) and "block size" not in str(exc):
                raise
            data = parse(_BIG_BLOCK)  # a record longer than Arrow's default 1 MiB block
        if _longest_cell(data) > MAX_FIELD_BYTES:
            raise pa.ArrowInvalid("a field over the limit")  # the row reader names it
    except (pa.ArrowException, OSError) as exc:
        counter.join()
        for _ in table.rows():  # raises the precise InputError (line, field count, encoding)
            pass
        raise InputError(table.path, f"unreadable {table.fmt.upper()} ({exc})") from None
    if counter.simple_lines(data.num_rows):
        lines = np.arange(2, data.num_rows + 2, dtype=np.int64)
    else:
        lines = _line_numbers_by_scan(table)
    return data, lines


def _longest_cell(data: pa.Table) -> int:
    """Bytes in the longest text cell of `data` (0 for no rows)."""
    import pyarrow.compute as pc

    longest = 0
    for column in data.columns:
        if data.num_rows:
            longest = max(longest, pc.max(pc.binary_length(column)).as_py() or 0)
    return longest


def _json_cell(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def _times_as_seconds(column):  # pa.ChunkedArray -> pa.ChunkedArray
    """Timestamps and dates become int64 Unix seconds (naive times taken as UTC)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_date(column.type):
        column = pc.cast(column, pa.timestamp("s"))
    if pa.types.is_timestamp(column.type):
        seconds = pc.cast(column, pa.timestamp("s", tz=column.type.tz), safe=False)
        return pc.cast(seconds, pa.int64())
    return column
