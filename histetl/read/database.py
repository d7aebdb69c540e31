"""Read access to a loaded target: `Database`, used by query, verify, resample, the demo and
the quality page, over the target's own reader (`histetl.targets.open_reader`: each database's
folder owns its SQL dialect).

It presents every table in its canonical Arrow types whatever the target stores: timestamps
`timestamp[ns, UTC]` (PostgreSQL's and Delta's exact `X_ns` bigint, not the microsecond
timestamp), prices `decimal128(19, 9)`, unsigned integers unsigned again. Results are Arrow
record batch streams; values in SQL are inlined literals (`histetl.sqltext.literal`), which
the PostgreSQL driver needs to stream a result with COPY.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from histetl.dbn import SUPPORTED_SCHEMAS
from histetl.schemas import TableSpec, table_spec
from histetl.sqltext import quote
from histetl.targets import DbColumn, Reader, open_reader

DERIVED_BARS = re.compile(r"^ohlcv-(\d+)([smhd])$")


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


class Database:
    """Read access to a loaded target, over the target's reader (`histetl.targets.Reader`)."""

    def __init__(self, target: Reader) -> None:
        self.target = target
        self.display = target.display
        self._columns: dict[str, list[DbColumn]] = {}
        self._tables: set[str] | None = None

    @classmethod
    def open(cls, uri: str) -> Database:
        return cls(open_reader(uri))

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.target.close()

    # -- raw access ---------------------------------------------------------------------------
    def stream(self, sql: str) -> pa.RecordBatchReader:
        """The result of `sql` as a stream; the cursor closes when the stream is exhausted."""
        return self.target.stream(sql)

    def fetch(self, sql: str) -> pa.Table:
        return self.stream(sql).read_all()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        table = self.fetch(sql)
        columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
        return list(zip(*columns, strict=True))

    # -- catalog ------------------------------------------------------------------------------
    def tables(self) -> set[str]:
        if self._tables is None:
            self._tables = self.target.tables()
        return self._tables

    def has_rows(self, table: str) -> bool:
        return table in self.tables() and bool(self.rows(f"SELECT 1 FROM {quote(table)} LIMIT 1"))

    def columns(self, table: str) -> list[DbColumn]:
        """The canonical columns of a table, in table order (PostgreSQL's X_ns folded into X)."""
        if table not in self._columns:
            schema = self.fetch(f"SELECT * FROM {quote(table)} LIMIT 0").schema
            spec = spec_for(table)
            types = {f.name: f.type for f in spec.arrow_schema} if spec else {}
            found = [self.target.column(f, schema, types) for f in schema]
            self._columns[table] = [c for c in found if c is not None]
        return self._columns[table]

    def column_names(self, table: str) -> list[str]:
        return [c.name for c in self.columns(table)]

    # -- SQL pieces ---------------------------------------------------------------------------
    def time_ns(self, column: str) -> str:
        """SQL for a timestamp column as int64 nanoseconds since the epoch."""
        return self.target.time_ns(column)

    def time_range(self, column: str, start_ns: int | None, end_ns: int | None) -> list[str]:
        """Conditions for start <= column < end, written so the target's indexes work."""
        return self.target.time_range(column, start_ns, end_ns)

    def time_order(self, column: str) -> str:
        return self.target.time_order(column)

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
