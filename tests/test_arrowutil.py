"""histetl.arrowutil: string-view arrays built from numpy equal what pyarrow builds from Python
strings, inline (<= 12 bytes) and referenced, with NULLs, sliced, and read by Polars."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from histetl.arrowutil import (
    StringTable,
    char_views,
    null_bitmap,
    numpy_values,
    string_views,
    validity,
)

VALUES = ["", "ES", "ESZ3-ESH4", "exactly12byt", "thirteen byte", "SPY   240119P00470000", "Zürich"]


def matrix(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [v.encode() for v in values]
    width = max(len(e) for e in encoded)
    chars = np.zeros((len(encoded), width), dtype=np.uint8)
    for i, e in enumerate(encoded):
        chars[i, : len(e)] = np.frombuffer(e, dtype=np.uint8)
    return chars, np.array([len(e) for e in encoded], dtype=np.int32)


def test_string_views_equal_pyarrows_inline_and_referenced() -> None:
    chars, lengths = matrix(VALUES)

    array = string_views(chars, lengths)

    array.validate(full=True)
    assert array.type == pa.string_view()
    assert array.equals(pa.array(VALUES, type=pa.string_view()))
    assert pl.from_arrow(array).to_list() == VALUES  # type: ignore[union-attr]


def test_string_views_with_validity_are_null_where_invalid() -> None:
    chars, lengths = matrix(VALUES)
    valid = np.array([True, False, True, True, False, True, True])

    array = string_views(chars, lengths, valid)

    expected = [v if ok else None for v, ok in zip(VALUES, valid, strict=True)]
    assert array.to_pylist() == expected
    assert array.null_count == 2


def test_string_views_of_short_strings_have_no_data_buffer() -> None:
    chars, lengths = matrix(["AAPL", "MSFT"])

    assert len(string_views(chars, lengths).buffers()) == 2


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"long enough to be referenced \xc3("])
def test_string_views_refuse_invalid_utf8(raw: bytes) -> None:
    chars = np.frombuffer(raw, dtype=np.uint8).reshape(1, -1)

    with pytest.raises(pa.ArrowInvalid):
        string_views(chars, np.array([len(raw)], dtype=np.int32))


def test_string_table_gathers_by_index_with_nulls() -> None:
    table = StringTable(VALUES)
    indices = np.array([6, 0, 5, 5, 2, 3, 1, 4], dtype=np.int64)
    valid = np.array([True, True, True, False, True, True, True, True])

    array = table.take(indices, valid)

    array.validate(full=True)
    assert array.to_pylist() == [
        VALUES[i] if ok else None for i, ok in zip(indices, valid, strict=True)
    ]


def test_string_table_of_nothing_gathers_only_nulls() -> None:
    array = StringTable([]).take(np.zeros(3, dtype=np.int64), np.zeros(3, dtype=bool))

    assert array.to_pylist() == [None, None, None]


def test_char_views_are_one_character_strings_and_nul_is_empty() -> None:
    codes = np.frombuffer(b"AB\x00N~", dtype=np.uint8)

    array = char_views(codes)

    array.validate(full=True)
    assert array.to_pylist() == ["A", "B", "", "N", "~"]
    assert char_views(np.zeros(0, dtype=np.uint8)).to_pylist() == []


def test_char_views_of_a_non_ascii_byte_are_refused() -> None:
    with pytest.raises(pa.ArrowInvalid):
        char_views(np.frombuffer(b"A\xe9", dtype=np.uint8))


def test_null_bitmap_is_none_when_all_valid_and_little_endian_bits_otherwise() -> None:
    assert null_bitmap(None) is None
    assert null_bitmap(np.ones(9, dtype=bool)) is None
    bitmap = null_bitmap(np.array([True, False, True, True, False, False, False, False, True]))
    assert bitmap is not None
    assert bitmap.to_pybytes() == bytes([0b00001101, 0b00000001])


def test_numpy_values_and_validity_follow_an_arrays_slice_offset() -> None:
    array = pa.array([10, None, 30, 40, None, 60], type=pa.int64()).slice(1, 4)

    values = numpy_values(array)
    mask = validity(array)

    assert mask.tolist() == [False, True, True, False]
    assert values[mask].tolist() == [30, 40]
    stamps = pa.array([1702564200123456789, 5], type=pa.timestamp("ns", "UTC")).slice(1)
    assert numpy_values(stamps, np.int64).tolist() == [5]  # a timestamp read as its int64
    assert validity(pa.array([1, 2, 3]).slice(1)).tolist() == [True, True]
