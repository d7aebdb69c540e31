"""Reading PostgreSQL back in canonical types: each timestamp from its exact `X_ns` bigint (the
`timestamptz` beside it is microseconds), numeric read as text and cast to its decimal (never
through a float), unsigned integers unsigned again. The PostgreSQL driver streams a result
with COPY as long as the statement has no bind parameters, so values are inlined as SQL
literals (`histetl.sqltext.literal`)."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from histetl.schemas import TS_TYPE
from histetl.secrets import redact
from histetl.sqltext import quote, ts_literal
from histetl.targets.base import DbColumn, RetryPolicy, SqlReader
from histetl.targets.postgres.schema import NS_SUFFIX


def open_postgres(uri: str, retry: RetryPolicy | None = None) -> PostgresReader:
    """A read connection (errors name host, user and database, never secrets); one attempt,
    or `retry`'s for a transient failure."""
    from histetl.targets.postgres.conn import connect, connect_attempts, parse_target

    if retry is None:
        conn, _guard = connect(uri, RetryPolicy())
    else:
        conn, _guard = connect_attempts(retry, parse_target(uri).label)(connect, uri, retry)
    return PostgresReader(conn, redact(uri))


def folded_column(
    field: pa.Field, schema: pa.Schema, other: Callable[[pa.Field], DbColumn]
) -> DbColumn | None:
    """A column of the PostgreSQL layout (also the lake's) read canonically: a timestamp X
    from its exact X_ns bigint (which is then not a column of its own), any other by `other`."""
    name = field.name
    base = name.removesuffix(NS_SUFFIX)
    if name != base and base in schema.names and pa.types.is_timestamp(schema.field(base).type):
        return None  # the exact half of a timestamp column
    if pa.types.is_timestamp(field.type):
        if name + NS_SUFFIX in schema.names:
            return DbColumn(name, TS_TYPE, quote(name + NS_SUFFIX))
        return DbColumn(name, pa.timestamp(field.type.unit, tz="UTC"), quote(name))
    return other(field)


class PostgresReader(SqlReader):
    def column(
        self, field: pa.Field, schema: pa.Schema, types: dict[str, pa.DataType]
    ) -> DbColumn | None:
        return folded_column(field, schema, lambda f: _plain_column(f, types))

    def time_ns(self, column: str) -> str:
        return quote(column + NS_SUFFIX)

    def time_range(self, column: str, start_ns: int | None, end_ns: int | None) -> list[str]:
        """A microsecond bound on the indexed timestamptz (indexes and chunk exclusion work),
        and the exact one on X_ns."""
        out = []
        exact = quote(column + NS_SUFFIX)
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
        return f"{quote(column)}, {quote(column + NS_SUFFIX)}"  # the indexed column first

    def delete(self, table: str, where: list[str]) -> int:
        return self.count(
            f"WITH gone AS (DELETE FROM {quote(table)} WHERE {' AND '.join(where)} RETURNING 1) "
            "SELECT count(*) FROM gone"
        )


def _plain_column(field: pa.Field, types: dict[str, pa.DataType]) -> DbColumn:
    meta = field.metadata or {}
    if meta.get(b"POSTGRESQL:type", b"").decode() == "numeric":  # as text: never a float
        target = types.get(field.name) or _numeric_type(meta.get(b"POSTGRESQL:typmod", b"-1"))
        return DbColumn(field.name, target, f"{quote(field.name)}::text")
    return DbColumn(field.name, types.get(field.name, field.type), quote(field.name))


def _numeric_type(typmod_text: bytes) -> pa.DataType:
    typmod = int(typmod_text or b"-1")
    if typmod < 4:
        return pa.string()  # unconstrained numeric: kept as its exact text
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    return pa.decimal128(precision, scale) if precision <= 38 else pa.string()
