"""Reading a Delta lake back: an in-memory DuckDB over the lake's tables (each scanned as its
current version's Arrow dataset: projections and filters reach the Parquet files), plus the
ledger from the tables' commit records as `histetl_ledger`. The ledger is read (every commit of
every table) only for a statement that names it, once per reader: `verify` reads it, `query`
does not.

The lake keeps PostgreSQL's layout (`targets.postgres.schema`), so columns fold as there: each
timestamp read from its exact `X_ns` bigint, decimal(20,0) back to uint64; the `date`
partition column is the lake's own and is not shown."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from histetl import objstore
from histetl.sqltext import quote
from histetl.targets.base import LEDGER_COLUMNS, LEDGER_TABLE, DbColumn, SqlReader
from histetl.targets.delta.layout import PARTITION
from histetl.targets.duckdb.read import duckdb_column
from histetl.targets.postgres.read import folded_column
from histetl.targets.postgres.schema import NS_SUFFIX

if TYPE_CHECKING:
    from histetl.targets.delta.sink import DeltaSink

_LEDGER_SCHEMA = pa.schema(
    [
        *(pa.field(name, pa.string()) for name in LEDGER_COLUMNS[:5]),
        *(pa.field(name, pa.int64()) for name in LEDGER_COLUMNS[5:9]),
        pa.field(LEDGER_COLUMNS[9], pa.string()),
        pa.field(LEDGER_COLUMNS[10], pa.timestamp("us", tz="UTC")),
    ]
)
_BATCH_ROWS = 65_536
_SCAN = "histetl_scan_"  # the registered dataset behind each table's view


class DeltaReader(SqlReader):
    def __init__(self, lake: DeltaSink) -> None:
        self._datasets: dict[str, Any] = {}
        for name in lake.table_names():
            table = lake.open_table(name)
            if table is None:
                continue
            try:
                self._datasets[name] = table.to_pyarrow_dataset()
            except OSError as exc:
                raise objstore.storage_error(exc, lake.table_uri(name)) from None
        self._lake = lake
        self._ledger: pa.Table | None = None  # read when a statement first names it
        super().__init__(_Lake(self._connect), lake.display)

    def _ledger_table(self) -> pa.Table:
        if self._ledger is None:
            self._ledger = pa.Table.from_pylist(
                [
                    dict(zip(LEDGER_COLUMNS, vars(e).values(), strict=True))
                    for e in self._lake.ledger()
                ],
                schema=_LEDGER_SCHEMA,
            )
        return self._ledger

    def _connect(self, sql: str) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection for the statement `sql` that sees the lake's tables (views are
        per connection), and the ledger if `sql` names it (an identifier is in the text)."""
        con = duckdb.connect(":memory:")
        if LEDGER_TABLE in sql.lower():
            con.register(LEDGER_TABLE, self._ledger_table())
        for name, dataset in self._datasets.items():
            con.register(_SCAN + name, dataset)
            con.execute(
                f"CREATE TEMP VIEW {quote(name)} AS "
                f"SELECT * EXCLUDE ({quote(PARTITION)}) FROM {quote(_SCAN + name)}"
            )
        return con

    def tables(self) -> set[str]:
        return {*self._datasets, LEDGER_TABLE}

    def column(
        self, field: pa.Field, schema: pa.Schema, types: dict[str, pa.DataType]
    ) -> DbColumn | None:
        def typed(field: pa.Field) -> DbColumn:  # decimal(20,0) -> uint64 again, ...
            plain = duckdb_column(field)
            return DbColumn(plain.name, types.get(plain.name, plain.type), plain.sql)

        return folded_column(field, schema, typed)

    def time_ns(self, column: str) -> str:
        return quote(column + NS_SUFFIX)

    def time_range(self, column: str, start_ns: int | None, end_ns: int | None) -> list[str]:
        exact = quote(column + NS_SUFFIX)
        out = []
        if start_ns is not None:
            out.append(f"{exact} >= {int(start_ns)}")
        if end_ns is not None:
            out.append(f"{exact} < {int(end_ns)}")
        return out

    def time_order(self, column: str) -> str:
        return quote(column + NS_SUFFIX)


class _Lake:
    """The DB-API face SqlReader uses: each statement runs on a fresh in-memory DuckDB
    connection with the lake registered (a statement's stream never shares a connection with
    the next one)."""

    def __init__(self, connect: Callable[[str], duckdb.DuckDBPyConnection]) -> None:
        self._connect = connect

    def cursor(self) -> _Cursor:
        return _Cursor(self._connect)

    def rollback(self) -> None:
        """Nothing to roll back: every statement has its own connection."""

    def close(self) -> None:
        """Nothing held open between statements."""


class _Cursor:
    """A statement on its own connection, with the DB-API names SqlReader calls."""

    def __init__(self, connect: Callable[[str], duckdb.DuckDBPyConnection]) -> None:
        self._connect = connect
        self._con: duckdb.DuckDBPyConnection | None = None
        self._result: duckdb.DuckDBPyRelation | None = None

    def execute(self, sql: str) -> None:
        self._con = self._connect(sql)
        self._result = self._con.sql(sql)

    def fetch_record_batch(self) -> pa.RecordBatchReader:
        assert self._result is not None
        return self._result.to_arrow_reader(_BATCH_ROWS)  # streamed, a batch at a time

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
