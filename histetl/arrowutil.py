"""Arrow string-view arrays built straight from numpy, without a per-value Python object.

A string-view value is 16 bytes: the length, then the string inline when it has at most 12
bytes, else a 4-byte prefix, a data-buffer index and an offset. Polars reads such arrays without
a copy, which makes them the cheapest way into the validation stage.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_INLINE = 12


def string_views(chars: np.ndarray, lengths: np.ndarray,
                 validity: np.ndarray | None = None) -> pa.Array:
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


def take_strings(values: list[str], indices: np.ndarray, valid: np.ndarray) -> pa.Array:
    """`values[indices]` as a string_view array, NULL where `valid` is False."""
    encoded = [v.encode("utf-8") for v in values]
    width = max((len(e) for e in encoded), default=0)
    table = np.zeros((len(encoded), max(width, 1)), dtype=np.uint8)
    for i, e in enumerate(encoded):  # one row per distinct symbol, not per record
        table[i, : len(e)] = np.frombuffer(e, dtype=np.uint8)
    lengths = np.array([len(e) for e in encoded], dtype=np.int32)
    safe = np.where(valid, indices, 0)
    return string_views(table[safe], lengths[safe] * valid, valid)


def null_bitmap(valid: np.ndarray | None) -> pa.Buffer | None:
    """An Arrow validity bitmap, or None when every value is valid."""
    if valid is None or valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))
