"""The zstd side of reading a `.dbn.zst`: decompression a few chunks ahead of the decoder, in a
background thread, and the framing check that tells a truncated stream from a complete one.

Nothing here knows DBN records: `histetl.decode` reads the decompressed stream like a file.
"""

from __future__ import annotations

import bisect
import functools
import io
import operator
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, cast

import zstandard

from histetl.dbn import ZSTD_MAGIC, ZSTD_SKIPPABLE
from histetl.errors import DecodeError
from histetl.prefetch import Prefetch


def preader(raw: IO[bytes]) -> Callable[[int, int], bytes]:
    """`pread(n, pos)` for a file: `os.pread` on a local one, seek and read on a remote one
    (an s3:// object, read only when the stream is done)."""
    try:
        fd = raw.fileno()
    except OSError:  # io.UnsupportedOperation: no file descriptor

        def seek_read(n: int, pos: int) -> bytes:
            raw.seek(pos)
            return raw.read(n)

        return seek_read
    return lambda n, pos: os.pread(fd, n, pos)


def zstd_truncation(pread: Callable[[int, int], bytes], size: int) -> str | None:
    """Where a zstd stream of `size` bytes stops short, from its frame and block headers:
    None when it ends exactly at the end of a frame, else where it stops (a phrase).

    A stream cut inside a frame decompresses without an error, into fewer bytes: only the
    framing tells. Reads 3 bytes per block (blocks are up to 128 KiB), with `pread`."""
    pos = 0
    while pos < size:
        frame = pos
        head = pread(18, pos)  # the longest frame header: 4 + 1 + 1 + 4 + 8 bytes
        if len(head) < 5:
            return f"in the header of the frame at byte {frame}"
        magic = int.from_bytes(head[:4], "little")
        if magic & ~0xF == ZSTD_SKIPPABLE:
            pos += 8 + int.from_bytes(head[4:8], "little")
            if len(head) < 8 or pos > size:
                return f"in the skippable frame at byte {frame}"
            continue
        if head[:4] != ZSTD_MAGIC:
            return None  # not zstd framing: the decompressor reports it
        descriptor = head[4]
        single_segment = descriptor >> 5 & 1
        pos += (
            5
            + (1 - single_segment)  # window descriptor
            + (0, 1, 2, 4)[descriptor & 3]  # dictionary id
            + (single_segment, 2, 4, 8)[descriptor >> 6]  # frame content size
        )
        if pos > size:
            return f"in the header of the frame at byte {frame}"
        last = 0
        while not last:
            block, start = pread(3, pos), pos
            if len(block) < 3:
                return f"where a block of the frame at byte {frame} should start (byte {start})"
            header = int.from_bytes(block, "little")
            last, kind, block_size = header & 1, header >> 1 & 3, header >> 3
            pos += 3 + (1 if kind == 1 else block_size)  # an RLE block stores one byte
            if pos > size:
                return f"inside the block at byte {start} of the frame at byte {frame}"
        pos += 4 * (descriptor >> 2 & 1)  # content checksum
        if pos > size:
            return f"in the content checksum of the frame at byte {frame}"
    return None


class ReadAhead(io.RawIOBase):
    """Decompresses in a background thread (zstd releases the GIL), a few chunks ahead of
    the decoder, so decompression overlaps decoding instead of adding to it.

    At the end of the compressed input it checks that the stream ended at a frame boundary
    (`zstd_truncation`) and raises `DecodeError` if not. It remembers how many compressed bytes
    each decompressed chunk took, so `compressed_position` maps what the decoder consumed to
    the compressed file, however far the read-ahead is."""

    _DEPTH = 4

    def __init__(self, raw: IO[bytes], path: Path | str, size: int, chunk: int = 1 << 22) -> None:
        """`chunk`: decompressed bytes per read-ahead step (the read-ahead holds 4)."""
        super().__init__()
        self._chunk = chunk
        self._raw, self._path, self._size = raw, path, size
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        self._stream = cast(IO[bytes], reader)
        # (decompressed end, compressed bytes read) per chunk, appended by the read-ahead thread
        self._marks: list[tuple[int, int]] = []
        self._prefetch = Prefetch(self._decompressed(), self._DEPTH, "histetl-zstd")
        self._chunks = self._prefetch.__enter__()
        self._pending = memoryview(b"")

    def _decompressed(self) -> Iterator[bytes]:
        end = 0
        for chunk in iter(functools.partial(self._stream.read, self._chunk), b""):
            end += len(chunk)
            self._marks.append((end, self._raw.tell()))
            yield chunk
        cut = zstd_truncation(preader(self._raw), self._size)
        if cut is not None:
            raise DecodeError(
                self._path,
                f"file is truncated: its zstd stream ends {cut} ({end:,} bytes decompressed)",
                offset=self._size,
                hint="nothing from this file was loaded; re-download it (incomplete download "
                "or copy?)",
            )

    def compressed_position(self, decompressed: int) -> int:
        """The compressed bytes behind the first `decompressed` bytes, interpolated within a
        chunk."""
        marks = self._marks
        i = bisect.bisect_left(marks, decompressed, key=operator.itemgetter(0))
        if i >= len(marks):
            return marks[-1][1] if marks else 0
        d0, c0 = marks[i - 1] if i else (0, 0)
        d1, c1 = marks[i]
        return c0 + (c1 - c0) * (decompressed - d0) // max(d1 - d0, 1)

    def read(self, size: int = -1) -> bytes:
        """`size` bytes (fewer only at the end of the stream): a view into one decompressed
        chunk when they lie within it (no copy), else the pieces joined (one copy, of exactly
        `size` bytes). numpy reads either without another copy."""
        if size < 0:
            size = sys.maxsize
        pieces: list[memoryview] = []
        while size:
            if not self._pending:
                chunk = next(self._chunks, None)  # raises the decompressor's error, if any
                if chunk is None:
                    break
                self._pending = memoryview(chunk)
            piece = self._pending[:size]
            self._pending = self._pending[len(piece) :]
            pieces.append(piece)
            size -= len(piece)
        if len(pieces) == 1:
            return pieces[0]  # type: ignore[return-value]
        return b"".join(pieces)

    def close(self) -> None:
        self._prefetch.__exit__()
        self._stream.close()
        super().close()
