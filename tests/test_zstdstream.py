"""The zstd read-ahead: reads that straddle its chunks, the end of the stream, truncation."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import zstandard

from histetl.errors import DecodeError
from histetl.zstdstream import ReadAhead

DATA = bytes(range(256)) * 40  # 10,240 bytes


def _reader(compressed: bytes, chunk: int) -> ReadAhead:
    return ReadAhead(io.BytesIO(compressed), Path("x.dbn.zst"), len(compressed), chunk=chunk)


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
@pytest.mark.parametrize("size", [1, 5, 7, 100, 3000])
def test_reads_across_chunks_give_the_stream_bytes_in_order(chunk: int, size: int) -> None:
    compressed = zstandard.ZstdCompressor().compress(DATA)
    reader = _reader(compressed, chunk)
    try:
        pieces = []
        while piece := reader.read(size):
            assert len(piece) == size or len(pieces) * size + len(piece) == len(DATA)
            pieces.append(bytes(piece))
    finally:
        reader.close()
    assert b"".join(pieces) == DATA


def test_read_of_everything_across_frames_gives_the_whole_stream() -> None:
    compressor = zstandard.ZstdCompressor()
    compressed = compressor.compress(DATA[:5000]) + compressor.compress(DATA[5000:])
    reader = _reader(compressed, 999)
    try:
        assert bytes(reader.read()) == DATA
        assert reader.read(10) == b""
    finally:
        reader.close()


def test_read_of_a_stream_cut_inside_a_frame_raises_truncated() -> None:
    compressed = zstandard.ZstdCompressor().compress(DATA)[:-3]
    reader = _reader(compressed, 64)
    try:
        with pytest.raises(DecodeError, match="file is truncated"):
            reader.read()
    finally:
        reader.close()
