"""Decode DBN files (v1, v2, v3; plain or zstd) straight into bounded Arrow record batches.

No per-record Python objects: a batch is one `numpy.frombuffer` over the raw record bytes with the
record layout of `databento_dbn`, then one contiguous copy per column wrapped into Arrow buffers.
Sentinels (UNDEF_PRICE, UNDEF_TIMESTAMP, definition fields at their type's maximum,
UNDEF_STAT_QUANTITY) become NULL. Memory is bounded by `batch_size` records, not the file size.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import databento_dbn
import numpy as np
import pyarrow as pa
import zstandard

from histetl import objstore
from histetl.arrowutil import char_views, null_bitmap, string_views
from histetl.config import DEFAULT_BATCH_SIZE
from histetl.dbn import DBN_MAGIC, PRELUDE, SUPPORTED_SCHEMAS, ZSTD_MAGIC, ZSTD_SKIPPABLE
from histetl.errors import DecodeError, UnsupportedSchemaError
from histetl.schemas import (
    DBN_VERSIONS,
    HASH_COLUMN,
    PRICE_TYPE,
    SYMBOL_COLUMN,
    Column,
    ColumnKind,
    TableSpec,
    table_spec,
)
from histetl.zstdstream import ReadAhead

# The largest metadata header a zstd file may declare (symbology for every OPRA instrument
# over a day is a few hundred MB at most); beyond it the length field is corrupt.
MAX_METADATA_LENGTH = 512 << 20
_UNDEF_PRICE = np.int64(databento_dbn.UNDEF_PRICE)
_TS_LIMIT = np.uint64(2**63)  # UNDEF_TIMESTAMP and anything pandas could not represent -> NULL
# Integer fields whose maximum value is a sentinel. Definitions: every integer field, as
# databento's own decoder treats them; statistics: the quantity (UNDEF_STAT_QUANTITY).
_SENTINEL_INTS: dict[str, frozenset[str] | None] = {
    "definition": None,
    "statistics": frozenset({"quantity"}),
}


def _price_array(raw: np.ndarray) -> pa.Array:
    values = np.ascontiguousarray(raw, dtype=np.int64)
    wide = np.empty((values.size, 2), dtype=np.int64)
    wide[:, 0] = values
    wide[:, 1] = values >> 63  # two's-complement sign extension to 128 bits
    bitmap = null_bitmap(values != _UNDEF_PRICE)
    return pa.Array.from_buffers(PRICE_TYPE, values.size, [bitmap, pa.py_buffer(wide)])


def _timestamp_array(raw: np.ndarray, type_: pa.DataType) -> pa.Array:
    values = np.ascontiguousarray(raw, dtype=np.uint64)
    return _numeric_array(values.view(np.int64), type_, values < _TS_LIMIT)


def _string_array(raw: np.ndarray) -> pa.Array:
    """Fixed-width NUL-padded byte fields to strings (string_view), cut at the first NUL."""
    n, width = raw.size, raw.dtype.itemsize
    chars = np.ascontiguousarray(raw).view(np.uint8).reshape(n, width)
    if width == 1:
        return char_views(chars[:, 0])
    nul = chars == 0
    lengths = np.where(nul.any(axis=1), nul.argmax(axis=1), width).astype(np.int32)
    return string_views(chars, lengths)


def _first_invalid_utf8(raw: np.ndarray) -> int:
    """Index of the first value that is not UTF-8 (only called on the error path)."""
    for i, value in enumerate(raw.tolist()):
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return i
    return 0


def _integer_array(raw: np.ndarray, column: Column, sentinel: bool) -> pa.Array:
    target = np.dtype(str(column.type))  # int8 ... uint64
    values = np.ascontiguousarray(raw, dtype=target)
    if not sentinel:
        return _numeric_array(values, column.type)
    limit = np.iinfo(raw.dtype).max if column.name == "quantity" else np.iinfo(target).max
    return _numeric_array(values, column.type, raw != limit)


def _numeric_array(
    values: np.ndarray, type_: pa.DataType, valid: np.ndarray | None = None
) -> pa.Array:
    """Wrap a contiguous numpy array as Arrow without a copy (and without pyarrow's pandas
    import that pa.array() triggers)."""
    return pa.Array.from_buffers(type_, values.size, [null_bitmap(valid), pa.py_buffer(values)])


def record_hash(records: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each record's bytes (records are multiples of 8 bytes)."""
    words = records.view(np.uint64).reshape(records.size, records.dtype.itemsize // 8)
    h = np.full(records.size, 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for i in range(words.shape[1]):
            h ^= words[:, i]
            h *= np.uint64(0xFF51AFD7ED558CCD)
            h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(29)
    return h.view(np.int64)


def is_remote(path: Path | str) -> bool:
    """An s3:// URL (kept as a string: a Path would fold its '//')."""
    return isinstance(path, str) and objstore.is_s3(path)


class DbnFile:
    """One DBN file: its header, and its records as Arrow batches of the canonical table.

    Use as a context manager. `batches()` yields the canonical columns except `symbol`
    (symbology is the map stage's job) and raises `DecodeError` naming the file and byte offset
    on a truncated or corrupt record.
    """

    def __init__(self, path: Path | str) -> None:
        """`path`: a local file, or an s3:// URL (read through histetl.objstore)."""
        self.path: Path | str = path if is_remote(path) else Path(path)
        if isinstance(self.path, str):
            self._raw, self.size = objstore.open_file(self.path)
        else:
            try:
                self._raw = open(self.path, "rb")  # noqa: SIM115 - closed in close()
            except OSError as exc:
                raise DecodeError(
                    self.path,
                    f"cannot open: {exc.strerror}",
                    hint="check the path and its permissions",
                ) from exc
            self.size = os.fstat(self._raw.fileno()).st_size
        try:
            self._stream, self.compressed = self._open_stream()
            self._offset = 0
            self.version, self.metadata = self._read_header()
            self.spec = self._check_schema()
        except BaseException:
            self.close()
            raise
        self.header_length = self._offset
        record = self.spec.record_class(self.version)
        self.record_dtype = np.dtype(record._dtypes)
        self._record = record

    # -- header --------------------------------------------------------------------------------
    def _open_stream(self) -> tuple[IO[bytes], bool]:
        magic = self._raw.read(4)
        self._raw.seek(0)
        if magic == ZSTD_MAGIC or int.from_bytes(magic, "little") & ~0xF == ZSTD_SKIPPABLE:
            return ReadAhead(self._raw, self.path, self.size), True  # type: ignore[return-value]
        return self._raw, False

    def _read(self, size: int) -> bytes:
        """Read up to `size` bytes of the (decompressed) DBN stream; short only at EOF. From
        a zstd stream, possibly a read-only memoryview (see ReadAhead.read)."""
        chunks = []
        remaining = size
        try:
            while remaining:
                chunk = self._stream.read(remaining)
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        except zstandard.ZstdError as exc:
            raise DecodeError(
                self.path,
                f"zstd decompression failed: {exc}",
                offset=self._offset + size - remaining,
            ) from exc
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._offset += len(data)
        return data

    def _read_header(self) -> tuple[int, Any]:
        prelude = bytes(self._read(PRELUDE.size))  # a zstd stream may give a view
        if not prelude and not self.compressed:
            raise DecodeError(self.path, "file is empty (0 bytes)", offset=0)
        if len(prelude) < PRELUDE.size and (
            DBN_MAGIC.startswith(prelude[:3]) or (self.size < 4 and ZSTD_MAGIC.startswith(prelude))
        ):
            raise DecodeError(
                self.path,
                f"file is truncated: it ends after {len(prelude)} bytes, inside the "
                + ("zstd magic number" if prelude[:1] == ZSTD_MAGIC[:1] else "DBN prelude"),
                offset=len(prelude),
            )
        if prelude[:3] != DBN_MAGIC:
            raise DecodeError(
                self.path,
                f"not a DBN file (starts with {prelude[:8]!r})",
                offset=0,
                hint="histetl reads DBN files (.dbn or .dbn.zst) as Databento delivers them",
            )
        _, version, length = PRELUDE.unpack(prelude)
        if version not in DBN_VERSIONS:
            raise DecodeError(
                self.path,
                f"DBN version {version} is not supported "
                f"(supported: {', '.join(map(str, DBN_VERSIONS))})",
                offset=3,
                hint="upgrade histetl, or convert the file with the dbn CLI",
            )
        # A corrupt length must not become an allocation: a plain file holds at most its size,
        # and no header is larger than MAX_METADATA_LENGTH (a zstd stream is also read only
        # as far as it really goes).
        available = self.size - PRELUDE.size
        if not self.compressed and length > available:
            raise self._truncated_header(available, length, self.size)
        if length > MAX_METADATA_LENGTH:
            raise DecodeError(
                self.path,
                f"the header declares {length:,} bytes of metadata, more than the "
                f"{MAX_METADATA_LENGTH >> 20} MiB histetl accepts (corrupt file?)",
                offset=4,
            )
        body = self._read(length)
        if len(body) < length:
            raise self._truncated_header(len(body), length, self._offset)
        try:
            metadata = databento_dbn.Metadata.decode(b"".join((prelude, body)))
        except Exception as exc:  # databento_dbn raises its own DBNError or ValueError
            raise DecodeError(self.path, f"corrupt metadata header: {exc}", offset=8) from exc
        return version, metadata

    def _truncated_header(self, present: int, length: int, offset: int) -> DecodeError:
        return DecodeError(
            self.path,
            f"file is truncated: it ends inside the metadata header ({present:,} of "
            f"{length:,} bytes)",
            offset=offset,
        )

    def _check_schema(self) -> TableSpec:
        schema = self.metadata.schema
        if schema is None:
            raise UnsupportedSchemaError(
                self.path,
                "mixed-schema DBN stream (live data) is not supported",
                hint="replay historical files with one schema each",
            )
        schema = str(schema)
        if schema not in SUPPORTED_SCHEMAS:
            raise UnsupportedSchemaError(
                self.path,
                f"unsupported schema {schema}; supported: {', '.join(SUPPORTED_SCHEMAS)}",
                hint="request one of the supported schemas, or leave this file out",
            )
        if self.metadata.ts_out:
            raise UnsupportedSchemaError(
                self.path,
                "records carry ts_out (live gateway send time); not supported",
                hint="replay historical files",
            )
        return table_spec(schema)

    def progress(self, records_done: int) -> float:
        """The fraction of the file decoded once `records_done` records are, 0..1: exact for
        plain files (the record count follows from the size); for zstd, the compressed bytes
        behind those records (not what the read-ahead has read) over the file size."""
        size = self.size
        done = self.header_length + records_done * self.record_dtype.itemsize
        if isinstance(self._stream, ReadAhead):
            done = self._stream.compressed_position(done)
        return min(done / size, 1.0) if size else 1.0

    @property
    def schema(self) -> str:
        return self.spec.schema

    @property
    def dataset(self) -> str:
        return str(self.metadata.dataset)

    # -- records -------------------------------------------------------------------------------
    def record_arrays(
        self, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> Iterator[tuple[int, np.ndarray]]:
        """(byte offset, structured numpy array) of at most `batch_size` records, checked for
        rtype and length."""
        size = self.record_dtype.itemsize
        while True:
            start = self._offset
            data = self._read(batch_size * size)
            if not data:
                return
            count, loose = divmod(len(data), size)
            if loose:
                raise DecodeError(
                    self.path,
                    f"file is truncated: it ends inside a record, {loose} trailing bytes "
                    f"where records of schema {self.schema} are {size} bytes "
                    "(incomplete download?)",
                    offset=start + count * size,
                )
            records = np.frombuffer(data, dtype=self.record_dtype, count=count)
            self._check_records(records, start)
            yield start, records

    def _check_records(self, records: np.ndarray, start: int) -> None:
        size = self.record_dtype.itemsize
        # A record starts with its length (in 4-byte words) and its rtype: both checked in
        # one pass over the pair as a little-endian uint16.
        heads = np.ndarray(records.size, np.dtype("<u2"), records, 0, (size,))
        expected = [size // 4 | rtype << 8 for rtype in self.spec.rtypes]
        bad = heads != expected[0]
        for other in expected[1:]:  # e.g. the legacy OHLCV rtype
            bad &= heads != other
        if bad.any():
            i = int(np.argmax(bad))
            raise DecodeError(
                self.path,
                f"record with rtype {records['rtype'][i]} and length "
                f"{int(records['length'][i]) * 4} where schema {self.schema} needs rtype "
                f"{'/'.join(map(str, self.spec.rtypes))} and length {size} (corrupt file?)",
                offset=start + i * size,
            )

    def batches(
        self, batch_size: int = DEFAULT_BATCH_SIZE, with_hash: bool = True
    ) -> Iterator[pa.RecordBatch]:
        """Canonical record batches (every column but `symbol`). Without `with_hash` the
        record_hash column is NULL: nothing will be loaded, so no key is needed."""
        schema = decoded_schema(self.spec)
        columns = [self.spec.column(name) for name in schema.names]
        for start, records in self.record_arrays(batch_size):
            arrays = [self._column(records, c, start, with_hash) for c in columns]
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)

    def _column(
        self, records: np.ndarray, column: Column, start: int, with_hash: bool = True
    ) -> pa.Array:
        if column.name == HASH_COLUMN:
            if not with_hash:
                return pa.nulls(records.size, pa.int64())
            return _numeric_array(record_hash(records), pa.int64())
        names = records.dtype.names or ()
        if column.name not in names:
            return pa.nulls(records.size, column.type)  # a field this DBN version lacks
        raw = records[column.name]
        if column.kind == ColumnKind.PRICE:
            return _price_array(raw)
        if column.kind == ColumnKind.TIMESTAMP:
            return _timestamp_array(raw, column.type)
        if column.kind == ColumnKind.STRING:
            try:
                return _string_array(raw)
            except pa.ArrowInvalid:
                bad = _first_invalid_utf8(raw)
                raise DecodeError(
                    self.path,
                    f"field {column.name} of record {bad} in this batch is not valid UTF-8 "
                    "(corrupt file?)",
                    offset=start + bad * self.record_dtype.itemsize,
                ) from None
        sentinels = _SENTINEL_INTS.get(self.schema, frozenset())
        return _integer_array(raw, column, sentinels is None or column.name in sentinels)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        stream = getattr(self, "_stream", None)
        if stream is not None and stream is not self._raw:
            stream.close()
        self._raw.close()

    def __enter__(self) -> DbnFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_table(path: Path | str, batch_size: int = DEFAULT_BATCH_SIZE) -> pa.Table:
    """Decode a whole file into one table (for tests and small files)."""
    with DbnFile(path) as dbn:
        return pa.Table.from_batches(list(dbn.batches(batch_size)), schema=decoded_schema(dbn.spec))


def decoded_schema(spec: TableSpec) -> pa.Schema:
    """The schema of decoded batches: the canonical table without `symbol`, strings as
    string_view (Polars reads those without a copy)."""
    return pa.schema(
        [
            pa.field(c.name, pa.string_view() if c.kind == ColumnKind.STRING else c.type)
            for c in spec.columns
            if c.name != SYMBOL_COLUMN
        ]
    )
