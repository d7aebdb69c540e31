"""What a Delta load keeps of a file while it streams, on disk rather than in memory: the rows
to append (`RowSpill`) and the primary keys of those rows (`KeyLog`), so that a load's memory
follows the batch size, not the file size.

Both live in unlinked temporary files: gone with the process, even a killed one. Keys are looked
up by a span of the index timestamp (the first key column): two rows can only share a key if
they share that timestamp, so a batch is checked against the earlier keys in its own span only.
A file in time order (as Databento writes them) reads none back from disk; a file out of order
reads back the runs that overlap each batch, slower but with the same bounded memory.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from typing import IO

import polars as pl
import pyarrow as pa

KEYS_IN_MEMORY = 1 << 18  # keys a KeyLog holds before it writes them to disk as a sorted run
_KEY_CHUNK = 1 << 16  # keys per chunk of a run on disk (the unit read back)


class RowSpill:
    """Record batches written to a temporary file and read back as a stream, as often as
    asked (each batch is read into memory on its own, then dropped)."""

    def __init__(self, schema: pa.Schema) -> None:
        self._schema = schema
        self._file: IO[bytes] | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None

    def write(self, rows: pa.Table) -> None:
        if self._writer is None:
            self._file = tempfile.TemporaryFile(prefix="histetl-delta-")  # noqa: SIM115
            self._writer = pa.ipc.new_file(pa.PythonFile(self._file, mode="w"), self._schema)
        for batch in rows.to_batches():
            self._writer.write_batch(batch)

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every batch written, in order."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is None:
            return
        self._file.seek(0)
        ipc = pa.ipc.open_file(pa.PythonFile(self._file, mode="r"))
        for i in range(ipc.num_record_batches):
            yield ipc.get_batch(i)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None


class KeyLog:
    """The keys added so far, found again by a span of the timestamp column `ts`: the latest
    up to `in_memory` keys are held in memory; past that they go to a temporary file as a run
    sorted by `ts`, in chunks whose time span is remembered (a few numbers per chunk)."""

    def __init__(self, ts: str, in_memory: int = KEYS_IN_MEMORY) -> None:
        if in_memory < 1:
            raise ValueError(f"in_memory must be at least 1, not {in_memory}")
        self._ts = ts
        self._limit = in_memory
        self._recent: list[pl.DataFrame] = []
        self._held = 0
        self._file: IO[bytes] | None = None
        self._chunks: list[tuple[int, int, int, int]] = []  # (min ts, max ts, offset, length)
        self._arrow: pa.Schema | None = None

    @property
    def held(self) -> int:
        """How many keys are in memory now."""
        return self._held

    @property
    def on_disk(self) -> int:
        """How many chunks of keys were written to disk."""
        return len(self._chunks)

    def add(self, keys: pl.DataFrame) -> None:
        self._recent.append(keys)
        self._held += keys.height
        if self._held >= self._limit:
            self._flush()

    def between(self, low: int, high: int) -> Iterator[pl.DataFrame]:
        """The keys added whose `ts` is in [low, high], a chunk at a time (a file out of time
        order may overlap every chunk: never all of them in memory at once)."""
        span = pl.col(self._ts).is_between(low, high)
        chunks = (
            self._read(offset, length)
            for first, last, offset, length in self._chunks
            if last >= low and first <= high
        )
        for frame in itertools.chain(self._recent, chunks):
            if (found := frame.filter(span)).height:
                yield found

    def _flush(self) -> None:
        run = pl.concat(self._recent).sort(self._ts)
        self._recent, self._held = [], 0
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="histetl-delta-keys-")  # noqa: SIM115
        for chunk in run.iter_slices(_KEY_CHUNK):
            batch = chunk.to_arrow().combine_chunks().to_batches()[0]
            self._arrow = batch.schema
            data = batch.serialize()
            offset = self._file.seek(0, os.SEEK_END)
            self._file.write(data)
            ts = chunk[self._ts]
            self._chunks.append((int(ts[0]), int(ts[-1]), offset, data.size))
        self._file.flush()

    def _read(self, offset: int, length: int) -> pl.DataFrame:
        assert self._file is not None
        assert self._arrow is not None
        data = os.pread(self._file.fileno(), length, offset)
        batch = pa.ipc.read_record_batch(pa.py_buffer(data), self._arrow)
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._recent, self._held, self._chunks = [], 0, []
