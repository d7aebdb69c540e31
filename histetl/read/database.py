"""Read access to a loaded target: `Database`, used by query, verify, resample, the demo and
the quality page.

It presents every table in its canonical Arrow types whatever the backend stores: timestamps
`timestamp[ns, UTC]` (PostgreSQL's exact `X_ns` bigint, not the microsecond `timestamptz`),
prices `decimal128(19, 9)` (PostgreSQL numeric read as text, never as float), unsigned integers
unsigned again. Results are Arrow record batch streams: the DuckDB driver streams its result,
and the PostgreSQL driver streams it with COPY as long as the statement has no bind parameters,
so values are inlined as SQL literals (`histetl.sqltext.literal`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from histetl.dbn import SUPPORTED_SCHEMAS
from histetl.errors import ConfigError, HistetlError, LoadError, first_line
from histetl.schemas import TS_TYPE, TableSpec, table_spec
from histetl.sqltext import quote, ts_literal
from histetl.targets import backend_of, redact

Backend = Literal["duckdb", "postgres"]
DERIVED_BARS = re.compile(r"^ohlcv-(\d+)([smhd])$")
_NS_SUFFIX = "_ns"


# -- the database ----------------------------------------------------------------------------------


def spec_for(name: str) -> TableSpec | None:
    """The canonical layout of a schema or table name: a DBN schema (`ohlcv-1m`, `trades`) or
    derived bars (`ohlcv-5m`: the layout of `ohlcv-1m`)."""
    schema = name.replace("_", "-")
    if schema in SUPPORTED_SCHEMAS:
        return table_spec(schema)
    if DERIVED_BARS.match(schema):
        return table_spec("ohlcv-1m")
    return None


@dataclass(frozen=True)
class DbColumn:
    """A canonical column and the SQL that reads it."""

    name: str
    type: pa.DataType
    sql: str
    from_ns: bool = False  # PostgreSQL: the exact X_ns bigint, read as a timestamp


class Database:
    """Read access to a loaded target over one ADBC connection."""

    def __init__(self, conn: Any, backend: Backend, display: str, owned: bool = True) -> None:
        self.conn = conn
        self.backend = backend
        self.display = display
        self._owned = owned
        self._columns: dict[str, list[DbColumn]] = {}
        self._tables: set[str] | None = None

    @classmethod
    def open(cls, uri: str) -> Database:
        if backend_of(uri) == "delta":
            raise ConfigError(
                "query, verify and resample do not read delta:/// lakes yet",
                where="--db",
                hint="histetl status lists what a lake holds; read its tables with "
                "polars.scan_delta or deltalake.DeltaTable",
            )
        if backend_of(uri) == "duckdb":
            import adbc_driver_duckdb.dbapi as duckdb_dbapi

            from histetl.targets import duckdb_path

            path = duckdb_path(uri)
            if path != ":memory:" and not Path(path).is_file():
                raise ConfigError(
                    f"no DuckDB database at {path}",
                    where="--db",
                    hint="load something first (histetl replay / run / demo) or fix the path",
                )
            try:
                return cls(duckdb_dbapi.connect(path), "duckdb", f"duckdb:///{path}")
            except Exception as exc:  # the ADBC driver raises its own error classes
                raise LoadError(
                    f"cannot open DuckDB database: {first_line(exc)}",
                    where=path,
                    hint="another histetl process may be writing to it; try again after it",
                ) from None
        from histetl.targets import RetryPolicy
        from histetl.targets.postgres.sink import connect

        conn, _guard = connect(uri, RetryPolicy())  # errors name host/user/db, never secrets
        return cls(conn, "postgres", redact(uri))

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned and self.conn is not None:
            conn, self.conn = self.conn, None
            with contextlib.suppress(Exception):  # no transaction open, or the connection is gone
                conn.rollback()  # end the read transaction; nothing was written
            conn.close()

    # -- raw access ---------------------------------------------------------------------------
    def stream(self, sql: str) -> pa.RecordBatchReader:
        """The result of `sql` as a stream; the cursor closes when the stream is exhausted."""
        cur = self.conn.cursor()
        try:
            cur.execute(sql)
            reader = cur.fetch_record_batch()
        except Exception as exc:
            cur.close()
            raise self._error(exc) from None

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from reader
            finally:
                cur.close()

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def fetch(self, sql: str) -> pa.Table:
        return self.stream(sql).read_all()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        table = self.fetch(sql)
        columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
        return list(zip(*columns, strict=True))

    def _error(self, exc: BaseException) -> HistetlError:
        first = first_line(exc)
        return LoadError(f"query failed: {first}", where=self.display)

    # -- catalog ------------------------------------------------------------------------------
    def tables(self) -> set[str]:
        if self._tables is None:
            rows = self.rows(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
            self._tables = {str(r[0]) for r in rows}
        return self._tables

    def has_rows(self, table: str) -> bool:
        return table in self.tables() and bool(self.rows(f"SELECT 1 FROM {quote(table)} LIMIT 1"))

    def columns(self, table: str) -> list[DbColumn]:
        """The canonical columns of a table, in table order (PostgreSQL's X_ns folded into X)."""
        if table not in self._columns:
            schema = self.fetch(f"SELECT * FROM {quote(table)} LIMIT 0").schema
            spec = spec_for(table)
            types = {f.name: f.type for f in spec.arrow_schema} if spec else {}
            reader = _pg_column if self.backend == "postgres" else _duckdb_column
            found = [reader(f, schema, types) for f in schema]
            self._columns[table] = [c for c in found if c is not None]
        return self._columns[table]

    def column_names(self, table: str) -> list[str]:
        return [c.name for c in self.columns(table)]

    # -- SQL pieces ---------------------------------------------------------------------------
    def time_ns(self, column: str) -> str:
        """SQL for a timestamp column as int64 nanoseconds since the epoch."""
        if self.backend == "postgres":
            return quote(column + _NS_SUFFIX)
        return f"epoch_ns({quote(column)})"

    def time_range(self, column: str, start_ns: int | None, end_ns: int | None) -> list[str]:
        """Conditions for start <= column < end, written so indexes and chunk exclusion work
        (PostgreSQL: a microsecond bound on the indexed timestamptz, the exact one on X_ns)."""
        out = []
        if self.backend == "duckdb":
            if start_ns is not None:
                out.append(f"{quote(column)} >= {ts_literal(start_ns)}::TIMESTAMPTZ_NS")
            if end_ns is not None:
                out.append(f"{quote(column)} < {ts_literal(end_ns)}::TIMESTAMPTZ_NS")
            return out
        exact = quote(column + _NS_SUFFIX)
        if start_ns is not None:
            floor_us = start_ns // 1000 * 1000
            out.append(f"{quote(column)} >= {ts_literal(floor_us)}::timestamptz")
            out.append(f"{exact} >= {int(start_ns)}")
        if end_ns is not None:
            last_us = (end_ns - 1) // 1000 * 1000
            out.append(f"{quote(column)} <= {ts_literal(last_us)}::timestamptz")
            out.append(f"{exact} < {int(end_ns)}")
        return out

    def time_order(self, column: str) -> str:
        if self.backend == "postgres":  # the indexed column first, then the exact one
            return f"{quote(column)}, {quote(column + _NS_SUFFIX)}"
        return quote(column)

    def read(
        self,
        table: str,
        columns: Sequence[str] | None = None,
        where: Sequence[str] = (),
        order_by: str | None = None,
        limit: int | None = None,
        batch_rows: int = 65_536,
    ) -> pa.RecordBatchReader:
        """Rows of `table` in canonical types, as a stream of batches of about `batch_rows`."""
        known = {c.name: c for c in self.columns(table)}
        chosen = [known[n] for n in columns] if columns else list(known.values())
        sql = f"SELECT {', '.join(c.sql for c in chosen)} FROM {quote(table)}"
        if where:
            sql += " WHERE " + " AND ".join(f"({w})" for w in where)
        if order_by:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        raw = self.stream(sql)
        schema = pa.schema([pa.field(c.name, c.type) for c in chosen])

        def canonical() -> Iterator[pa.RecordBatch]:
            pending: list[pa.RecordBatch] = []
            rows = 0
            for batch in raw:  # DuckDB streams 2048-row vectors: regroup into bigger batches
                pending.append(batch)
                rows += batch.num_rows
                if rows >= batch_rows:
                    yield _canonical(pending, chosen, schema)
                    pending, rows = [], 0
            if rows:
                yield _canonical(pending, chosen, schema)

        return pa.RecordBatchReader.from_batches(schema, canonical())


def _canonical(
    batches: list[pa.RecordBatch], columns: list[DbColumn], schema: pa.Schema
) -> pa.RecordBatch:
    table = pa.Table.from_batches(batches).combine_chunks()
    arrays = [table.column(i).cast(c.type).combine_chunks() for i, c in enumerate(columns)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _duckdb_column(
    field: pa.Field, _schema: pa.Schema, _types: dict[str, pa.DataType]
) -> DbColumn | None:
    type_ = field.type
    if pa.types.is_timestamp(type_) and type_.tz:  # DuckDB says Etc/UTC
        type_ = pa.timestamp(type_.unit, tz="UTC")
    if pa.types.is_string_view(type_) or pa.types.is_large_string(type_):
        type_ = pa.string()
    return DbColumn(field.name, type_, quote(field.name))


def _pg_column(
    field: pa.Field, schema: pa.Schema, types: dict[str, pa.DataType]
) -> DbColumn | None:
    name = field.name
    meta = field.metadata or {}
    pg_type = meta.get(b"POSTGRESQL:type", b"").decode()
    if name.endswith(_NS_SUFFIX) and name[: -len(_NS_SUFFIX)] in schema.names:
        base = schema.field(name[: -len(_NS_SUFFIX)])
        if pa.types.is_timestamp(base.type):
            return None  # the exact half of a timestamp column
    if pa.types.is_timestamp(field.type):
        if name + _NS_SUFFIX in schema.names:
            return DbColumn(name, TS_TYPE, quote(name + _NS_SUFFIX), from_ns=True)
        return DbColumn(name, pa.timestamp(field.type.unit, tz="UTC"), quote(name))
    if pg_type == "numeric":
        target = types.get(name) or _numeric_type(meta.get(b"POSTGRESQL:typmod", b"-1"))
        return DbColumn(name, target, f"{quote(name)}::text")
    return DbColumn(name, types.get(name, field.type), quote(name))


def _numeric_type(typmod_text: bytes) -> pa.DataType:
    typmod = int(typmod_text or b"-1")
    if typmod < 4:
        return pa.string()  # unconstrained numeric: kept as its exact text
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    return pa.decimal128(precision, scale) if precision <= 38 else pa.string()
