"""Read the key/value header of a GGUF file without loading its weights.

llama.cpp answers a bad file with a bare "failed to load model" (or, for some truncations, by
reading garbage), so the backend checks the file here first: magic bytes, version, and a header
that parses to the end. It also tells whether the file carries a chat template, which decides if
a chat format must be given. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

GGUF_MAGIC = b"GGUF"
_SUPPORTED_VERSIONS = (2, 3)

# GGUF value types -> struct format of the scalar (strings and arrays are handled apart).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFFormatError(ValueError):
    """The file is not a readable GGUF file (wrong magic, unknown version, cut short)."""


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise GGUFFormatError("the header ends early (the file is truncated)")
    return data


def _unpack(f: BinaryIO, fmt: str) -> Any:
    return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]


def _read_string(f: BinaryIO, keep: bool) -> str | None:
    length = _unpack(f, "<Q")
    if length > 1 << 30:  # no sane key or template is a gigabyte: the bytes are not a header
        raise GGUFFormatError(f"implausible string length {length} in the header")
    if not keep:
        f.seek(length, 1)  # arrays of 50k vocabulary strings: skip, do not decode
        return None
    return _read(f, length).decode("utf-8", errors="replace")


def _read_value(f: BinaryIO, vtype: int, keep: bool) -> Any:
    if vtype in _SCALARS:
        return _unpack(f, _SCALARS[vtype])
    if vtype == _STRING:
        return _read_string(f, keep)
    if vtype == _ARRAY:
        item_type, count = _unpack(f, "<I"), _unpack(f, "<Q")
        if item_type in _SCALARS:  # fixed-size items: jump over the whole array at once
            f.seek(count * struct.calcsize(_SCALARS[item_type]), 1)
        else:
            for _ in range(count):
                _read_value(f, item_type, keep=False)
        return None  # arrays (vocabularies, merges) are never needed by the caller
    raise GGUFFormatError(f"unknown value type {vtype} in the header")


def read_gguf_metadata(path: str | Path) -> dict[str, Any]:
    """Scalar and string metadata of a GGUF file (arrays are skipped and come back as None).

    Raises GGUFFormatError when the file is not GGUF or its header is cut short; the weights
    themselves are not read; a file cut before its last tensor begins is caught from the tensor
    table, one cut inside the last tensor is left to llama.cpp (which refuses it cleanly).
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        magic = f.read(4)
        if magic != GGUF_MAGIC:
            raise GGUFFormatError(f"not a GGUF file (starts with {magic!r}, expected b'GGUF')")
        version = _unpack(f, "<I")
        if version not in _SUPPORTED_VERSIONS:
            raise GGUFFormatError(f"unsupported GGUF version {version}")
        _tensor_count, kv_count = _unpack(f, "<Q"), _unpack(f, "<Q")
        if kv_count > 100_000:
            raise GGUFFormatError(f"implausible metadata count {kv_count}")
        meta: dict[str, Any] = {"gguf.version": version}
        for _ in range(kv_count):
            key = _read_string(f, keep=True)
            meta[key] = _read_value(f, _unpack(f, "<I"), keep=True)
            if f.tell() > size:  # seek() past the end does not fail by itself
                raise GGUFFormatError("the header ends early (the file is truncated)")
        last_offset = 0
        for _ in range(_tensor_count):
            _read_string(f, keep=False)
            n_dims = _unpack(f, "<I")
            f.seek(8 * n_dims + 4, 1)  # dimensions and tensor type
            last_offset = max(last_offset, _unpack(f, "<Q"))
        align = int(meta.get("general.alignment") or 32)
        data_start = -(-f.tell() // align) * align
        if f.tell() > size or (_tensor_count and size <= data_start + last_offset):
            raise GGUFFormatError(
                f"the file ends before its tensor data does ({size} bytes; the last tensor "
                f"starts at byte {data_start + last_offset}): it is truncated"
            )
    return meta
