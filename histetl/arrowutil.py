"""Arrow string-view arrays built straight from numpy, without a per-value Python object.

A string-view value is 16 bytes: the length, then the string inline when it has at most 12
bytes, else a 4-byte prefix, a data-buffer index and an offset. Polars reads such arrays without
a copy, which makes them the cheapest way into the validation stage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

_INLINE = 12
_VIEW = np.dtype((np.void, 16))  # one string-view value


def string_views(
    chars: np.ndarray, lengths: np.ndarray, validity: np.ndarray | None = None
) -> pa.Array:
    """A string_view array over the rows of `chars` (an (n, width) uint8 matrix), each row
    holding `lengths[i]` bytes; rows longer than 12 bytes reference `chars` itself."""
    n, width = chars.shape
    views = np.zeros((n, 16), dtype=np.uint8)
    words = views.view(np.int32)
    words[:, 0] = lengths
    inline = min(width, _INLINE)
    if inline:
        keep = np.arange(inline)[None, :] < lengths[:, None]
        views[:, 4 : 4 + inline] = np.where(keep, chars[:, :inline], 0)
    buffers = [null_bitmap(validity), pa.py_buffer(views)]
    long = lengths > _INLINE
    if long.any():
        rows = np.flatnonzero(long)
        views[rows, 8:16] = 0
        words[rows, 2] = 0  # data buffer index
        words[rows, 3] = (rows * width).astype(np.int32)
        buffers.append(pa.py_buffer(np.ascontiguousarray(chars)))
    array = pa.Array.from_buffers(pa.string_view(), n, buffers)
    if chars.size and int(chars.max()) >= 0x80:
        array.validate(full=True)  # raises ArrowInvalid on invalid UTF-8
    return array


class StringTable:
    """A small set of distinct strings, gathered into string_view arrays by index.

    The 16-byte views are built once; `take` is one row gather per batch (symbols are few,
    records many)."""

    def __init__(self, values: list[str]) -> None:
        encoded = [v.encode("utf-8") for v in values]
        width = max((len(e) for e in encoded), default=1) or 1
        chars = np.zeros((len(encoded), width), dtype=np.uint8)
        for i, e in enumerate(encoded):  # one row per distinct string, not per record
            chars[i, : len(e)] = np.frombuffer(e, dtype=np.uint8)
        lengths = np.array([len(e) for e in encoded], dtype=np.int32)
        template = string_views(chars, lengths)
        buffers = template.buffers()
        # One 16-byte item per view, plus an all-zero one (NULL) at the end: np.take on a
        # 1-d array of 16-byte items is a plain gather, 50x faster than indexing rows of a
        # (n, 16) byte matrix.
        views = np.zeros(len(encoded) + 1, dtype=_VIEW)
        views[:-1] = np.frombuffer(buffers[1], dtype=_VIEW)
        self._views = views
        self._data = buffers[2:]

    def take(self, indices: np.ndarray, valid: np.ndarray) -> pa.Array:
        """values[indices] as string_view, NULL where `valid` is False."""
        views = np.take(self._views, np.where(valid, indices, len(self._views) - 1))
        return pa.Array.from_buffers(
            pa.string_view(), len(indices), [null_bitmap(valid), pa.py_buffer(views), *self._data]
        )


def char_views(codes: np.ndarray) -> pa.Array:
    """Single-byte char fields (DBN `c_char`) as string_view. Little-endian, the first word of
    a view is the length (1, or 0 for NUL) plus the character in byte 4."""
    if int(codes.max(initial=0)) >= 0x80:  # not ASCII: let the general path validate it
        return string_views(codes.reshape(-1, 1), (codes != 0).astype(np.int32))
    views = np.zeros((codes.size, 2), dtype=np.uint64)
    wide = codes.astype(np.uint64)
    views[:, 0] = (wide << np.uint64(32)) | (wide != 0)
    return pa.Array.from_buffers(pa.string_view(), codes.size, [None, pa.py_buffer(views)])


def null_bitmap(valid: np.ndarray | None) -> pa.Buffer | None:
    """An Arrow validity bitmap, or None when every value is valid."""
    if valid is None or valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def numpy_values(array: pa.Array, dtype: np.dtype[Any] | type | None = None) -> np.ndarray:
    """The values buffer of a fixed-width Arrow array as numpy, without a copy (NULL slots
    hold whatever the buffer has; combine with `validity`). Avoids Array.to_numpy, which
    imports pandas."""
    type_ = np.dtype(dtype) if dtype is not None else np.dtype(str(array.type))
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=type_, count=len(array), offset=array.offset * type_.itemsize)


def validity(array: pa.Array) -> np.ndarray:
    """Boolean numpy mask of the non-NULL values."""
    bitmap = array.buffers()[0]
    if bitmap is None or array.null_count == 0:
        return np.ones(len(array), dtype=bool)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return bits[array.offset : array.offset + len(array)].astype(bool)
