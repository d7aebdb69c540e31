"""Reading a DuckDB file back: its columns are the canonical types already (timestamps with
nanoseconds, decimal prices, unsigned integers), so reading is plain SQL."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from histetl.errors import ConfigError, LoadError
from histetl.sqltext import quote, ts_literal
from histetl.targets.base import DbColumn, SqlReader
from histetl.targets.duckdb import duckdb_path, is_locked, message, open_error


def open_duckdb(uri: str) -> DuckDBReader:
    import adbc_driver_duckdb.dbapi as duckdb_dbapi

    path = duckdb_path(uri)
    if path != ":memory:" and not Path(path).is_file():
        raise ConfigError(
            f"no DuckDB database at {path}",
            where="--db",
            hint="load something first (histetl replay / run / demo) or fix the path",
        )
    try:
        return DuckDBReader(duckdb_dbapi.connect(path), f"duckdb:///{path}")
    except Exception as exc:  # the ADBC driver raises its own error classes
        if not is_locked(exc):
            raise open_error(exc, path) from None
        raise LoadError(
            f"cannot open DuckDB database: {message(exc)}",
            where=path,
            hint="another histetl process may be writing to it; try again after it",
        ) from None


def duckdb_column(field: pa.Field) -> DbColumn:
    """A column as DuckDB returns it, in the canonical Arrow spelling."""
    type_ = field.type
    if pa.types.is_timestamp(type_) and type_.tz:  # DuckDB says Etc/UTC
        type_ = pa.timestamp(type_.unit, tz="UTC")
    if pa.types.is_string_view(type_) or pa.types.is_large_string(type_):
        type_ = pa.string()
    return DbColumn(field.name, type_, quote(field.name))


class DuckDBReader(SqlReader):
    def column(
        self, field: pa.Field, schema: pa.Schema, types: dict[str, pa.DataType]
    ) -> DbColumn | None:
        return duckdb_column(field)

    def time_ns(self, column: str) -> str:
        return f"epoch_ns({quote(column)})"

    def time_range(self, column: str, start_ns: int | None, end_ns: int | None) -> list[str]:
        out = []
        if start_ns is not None:
            out.append(f"{quote(column)} >= {ts_literal(start_ns)}::TIMESTAMPTZ_NS")
        if end_ns is not None:
            out.append(f"{quote(column)} < {ts_literal(end_ns)}::TIMESTAMPTZ_NS")
        return out

    def time_order(self, column: str) -> str:
        return quote(column)

    def delete(self, table: str, where: list[str]) -> int:
        return self.count(f"DELETE FROM {quote(table)} WHERE {' AND '.join(where)}")
