"""PostgreSQL through ADBC's low-level API, in the few DB-API shaped calls this folder makes.

ADBC's DB-API layer (`adbc_driver_manager.dbapi`) imports pyarrow.dataset, and with it pandas:
about 0.3 s of every PostgreSQL run's start-up, for nothing histetl uses. These classes drive
`AdbcDatabase`/`AdbcConnection`/`AdbcStatement` as that layer does: autocommit off, each
statement prepared, parameters bound as one Arrow row, results read as Arrow, and every
blocking call made under ADBC's SIGINT handler, which answers Ctrl-C by cancelling the
statement (the error `targets.base.stopped_by_signal` recognises).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import struct
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import adbc_driver_manager as adbc
import adbc_driver_postgresql
import pyarrow as pa
from adbc_driver_manager._lib import _blocking_call
from adbc_driver_manager._reader import AdbcRecordBatchReader

T = TypeVar("T")
_EPOCH = dt.datetime(1970, 1, 1)


def _param(value: object) -> pa.Array:
    """A one-row Arrow array of a bind parameter, typed as pyarrow would infer it, built from
    buffers: pyarrow's conversion of Python objects imports pandas (to look for its types)."""
    if value is None:
        return pa.nulls(1)
    if isinstance(value, bool):
        return _fixed(pa.bool_(), bytes([value]))
    if isinstance(value, int):
        return _fixed(pa.int64(), struct.pack("<q", value))
    if isinstance(value, float):
        return _fixed(pa.float64(), struct.pack("<d", value))
    if isinstance(value, str):
        data = value.encode("utf-8")
        offsets = pa.py_buffer(struct.pack("<ii", 0, len(data)))
        return pa.Array.from_buffers(pa.string(), 1, [None, offsets, pa.py_buffer(data)])
    if isinstance(value, dt.datetime):
        aware = value.tzinfo is not None
        wall = value.astimezone(dt.UTC).replace(tzinfo=None) if aware else value
        micros = (wall - _EPOCH) // dt.timedelta(microseconds=1)
        return _fixed(pa.timestamp("us", tz="UTC" if aware else None), struct.pack("<q", micros))
    raise TypeError(f"no Arrow type for a parameter of type {type(value).__name__}")


def _fixed(type_: pa.DataType, value: bytes) -> pa.Array:
    return pa.Array.from_buffers(type_, 1, [None, pa.py_buffer(value)])


_SHARED_LOCK = threading.Lock()
_SHARED: dict[str, adbc.AdbcDatabase] = {}  # at most one: the last target connected to


def _connection(target: str, conninfo: str) -> adbc.AdbcConnection:
    """A new connection to `conninfo`, through the process's `AdbcDatabase` for `target` (the
    URI as given, before histetl adds timeouts). The driver's database connects once to read
    the server's types (pg_type, pg_attribute: about 0.1 s, more with many tables); the
    pre-check, the sink and its reconnects then reuse it, each connection with its own
    conninfo (the driver connects with the database's current `uri`)."""
    with _SHARED_LOCK:
        db = _SHARED.get(target)
        if db is None:
            db = adbc_driver_postgresql.connect(conninfo)
            for old in _SHARED.values():
                with contextlib.suppress(RuntimeError):  # still open connections keep it
                    old.close()
            _SHARED.clear()
            _SHARED[target] = db
        else:
            db.set_options(uri=conninfo)
        return adbc.AdbcConnection(db)  # libpq connects here


class Connection:
    """One libpq connection in a transaction (autocommit off): `cursor`, `commit`,
    `rollback`, `close`. `target` is the URI as given (it names the shared database)."""

    def __init__(self, conninfo: str, target: str) -> None:
        self._conn = _connection(target, conninfo)
        try:
            self._conn.set_autocommit(False)
        except BaseException:
            self._conn.close()
            raise
        self._cursors: weakref.WeakSet[Cursor] = weakref.WeakSet()
        self._closed = False

    def cursor(self) -> Cursor:
        cursor = Cursor(self._conn)
        self._cursors.add(cursor)
        return cursor

    def commit(self) -> None:
        self._conn.commit()

    def rollback(self) -> None:
        self._conn.rollback()

    def close(self) -> None:
        """Close the open cursors (ADBC refuses to close a connection with open statements),
        then the connection."""
        if self._closed:
            return
        self._closed = True
        try:
            for cursor in list(self._cursors):
                cursor.close()
        finally:
            self._conn.close()


class Cursor:
    """One statement: `execute` (with positional $n parameters), then `fetchall`/`fetchone`
    (tuples), `fetch_arrow_table`, or `fetch_record_batch` (streamed); `adbc_ingest` COPYs
    an Arrow stream into a table."""

    def __init__(self, conn: adbc.AdbcConnection) -> None:
        self._stmt = adbc.AdbcStatement(conn)
        self._handle: Any = None  # the last result's Arrow stream, not read yet
        self._rows: Iterator[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self.description: list[str] | None = None  # the result's column names
        self._closed = False

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _blocking(self, call: Callable[..., T], *args: Any) -> T:
        return _blocking_call(call, args, {}, self._stmt.cancel)

    def _clear(self) -> None:
        handle, self._handle, self._rows, self.description = self._handle, None, None, None
        if handle is not None:
            handle.release()

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        self._clear()
        self._stmt.set_sql_query(sql)
        with contextlib.suppress(adbc.NotSupportedError):
            self._blocking(self._stmt.prepare)
        if params:
            names = [str(i) for i in range(len(params))]
            arrays = [_param(value) for value in params]
            self._stmt.bind(pa.RecordBatch.from_arrays(arrays, names=names))
        self._handle, self.rowcount = self._blocking(self._stmt.execute_query)
        schema = pa.Schema._import_from_c_capsule(self._handle.__arrow_c_schema__())
        self.description = schema.names

    def _result(self) -> Any:
        if self._handle is None:
            raise adbc.ProgrammingError(
                "no result to fetch (execute first, and fetch once)",
                status_code=adbc.AdbcStatusCode.INVALID_STATE,
            )
        handle, self._handle = self._handle, None
        return handle

    def fetch_arrow_table(self) -> pa.Table:
        handle = self._result()  # alive until imported: releasing it frees the stream
        reader = AdbcRecordBatchReader._import_from_c(handle.address)
        return self._blocking(reader.read_all)

    def fetch_record_batch(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_stream(self._result())

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._row_iter())

    def fetchone(self) -> tuple[Any, ...] | None:
        return next(self._row_iter(), None)

    def _row_iter(self) -> Iterator[tuple[Any, ...]]:
        if self._rows is None:
            table = self.fetch_arrow_table()
            self._rows = zip(*(column.to_pylist() for column in table.columns), strict=True)
        return self._rows

    def adbc_ingest(
        self, table: str, data: pa.RecordBatchReader, mode: str = "append", temporary: bool = False
    ) -> int:
        """COPY `data` into `table` (binary COPY); returns the rows written."""
        self._clear()
        modes = {"append": adbc.INGEST_OPTION_MODE_APPEND, "create": adbc.INGEST_OPTION_MODE_CREATE}
        self._stmt.set_options(
            **{
                adbc.INGEST_OPTION_TARGET_TABLE: table,
                adbc.INGEST_OPTION_MODE: modes[mode],
                adbc.StatementOptions.INGEST_TEMPORARY.value: "true" if temporary else "false",
            }
        )
        self._stmt.bind_stream(data)
        return int(self._blocking(self._stmt.execute_update))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._clear()
        finally:
            self._stmt.close()
