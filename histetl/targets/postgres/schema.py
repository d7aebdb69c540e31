"""PostgreSQL table layout for the canonical tables, and the Arrow conversion that feeds it.

PostgreSQL's `timestamptz` holds microseconds; DBN timestamps are nanoseconds. Every timestamp
column X therefore becomes two columns: `X timestamptz` (truncated to the microsecond, for
humans, range queries and TimescaleDB partitioning) and `X_ns bigint` (the exact nanoseconds
since the epoch). Prices are `numeric(19,9)`, exact. Unsigned integers widen to the next signed
type (`uint64` to `numeric(20,0)`), because ADBC's COPY writer would wrap values above 2^63-1.
ADBC does not convert on append, so `to_pg_arrow` produces exactly the table's column types.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from histetl.errors import ConfigError
from histetl.sqltext import quote
from histetl.targets.base import TableTarget

NS_SUFFIX = "_ns"
_TS_US = pa.timestamp("us", tz="UTC")
_INTS: dict[pa.DataType, tuple[str, pa.DataType]] = {
    pa.int8(): ("smallint", pa.int16()), pa.int16(): ("smallint", pa.int16()),
    pa.int32(): ("integer", pa.int32()), pa.int64(): ("bigint", pa.int64()),
    pa.uint8(): ("smallint", pa.int16()), pa.uint16(): ("integer", pa.int32()),
    pa.uint32(): ("bigint", pa.int64()), pa.uint64(): ("numeric(20,0)", pa.decimal128(20, 0)),
    pa.float32(): ("real", pa.float32()), pa.float64(): ("double precision", pa.float64()),
    pa.bool_(): ("boolean", pa.bool_()), pa.string(): ("text", pa.string()),
    pa.large_string(): ("text", pa.string()),
}  # fmt: skip


IDENTIFIER_MAX_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: longer names are truncated


def check_identifier(name: str, where: str = "mapping key `table`") -> None:
    """PostgreSQL truncates identifiers to 63 bytes, so two long table names that differ
    only after that would silently be one table: refuse them."""
    size = len(name.encode("utf-8"))
    if size > IDENTIFIER_MAX_BYTES:
        raise ConfigError(
            f"table name {name!r} is {size} bytes; PostgreSQL names are at most "
            f"{IDENTIFIER_MAX_BYTES} bytes (it would truncate it, so two names that differ "
            "only after that would land in one table)",
            where=where,
            hint=f"shorten the table name to at most {IDENTIFIER_MAX_BYTES} bytes",
        )
    if not name or "\0" in name:
        raise ConfigError("a table name must be non-empty text without NUL", where=where)


def index_name(table: str, suffix: str) -> str:
    """`<table>_<suffix>`, shortened with a hash when it would pass 63 bytes (so indexes of
    two long table names never collide after truncation)."""
    name = f"{table}_{suffix}"
    if len(name.encode("utf-8")) <= IDENTIFIER_MAX_BYTES:
        return name
    digest = hashlib.sha256(table.encode("utf-8")).hexdigest()[:8]
    keep = IDENTIFIER_MAX_BYTES - len(suffix) - len(digest) - 2
    head = table.encode("utf-8")[:keep].decode("utf-8", "ignore")
    return f"{head}_{digest}_{suffix}"


@dataclass(frozen=True)
class PgColumn:
    name: str
    sql_type: str
    arrow_type: pa.DataType
    source: str  # the canonical column it comes from
    part: str  # "value", "us" (timestamptz) or "ns" (exact bigint)
    not_null: bool


def pg_columns(schema: pa.Schema, key: tuple[str, ...]) -> list[PgColumn]:
    columns: list[PgColumn] = []
    for field in schema:
        not_null = field.name in key or not field.nullable
        type_ = field.type
        if pa.types.is_timestamp(type_):
            columns.append(PgColumn(field.name, "timestamptz", _TS_US, field.name, "us", not_null))
            columns.append(
                PgColumn(field.name + NS_SUFFIX, "bigint", pa.int64(), field.name, "ns", not_null)
            )
        elif pa.types.is_decimal(type_):
            columns.append(
                PgColumn(
                    field.name,
                    f"numeric({type_.precision},{type_.scale})",
                    type_,
                    field.name,
                    "value",
                    not_null,
                )
            )
        elif type_ in _INTS:
            sql_type, arrow_type = _INTS[type_]
            columns.append(
                PgColumn(field.name, sql_type, arrow_type, field.name, "value", not_null)
            )
        else:
            raise ConfigError(
                f"no PostgreSQL column type for Arrow type {type_} (column {field.name})",
                hint="cast the column to a supported type in the mapping",
            )
    return columns


def pg_arrow_schema(target: TableTarget) -> pa.Schema:
    return pa.schema(
        [
            pa.field(c.name, c.arrow_type, nullable=not c.not_null)
            for c in pg_columns(target.schema, target.key)
        ]
    )


def create_table_sql(target: TableTarget) -> list[str]:
    """CREATE TABLE and its indexes, idempotent."""
    columns = pg_columns(target.schema, target.key)
    body = ",\n    ".join(
        f"{quote(c.name)} {c.sql_type}" + (" NOT NULL" if c.not_null else "") for c in columns
    )
    key = ", ".join(quote(c) for c in target.key)
    table = quote(target.name)
    statements = [f"CREATE TABLE IF NOT EXISTS {table} (\n    {body},\n    PRIMARY KEY ({key})\n)"]
    names = {c.name for c in columns}
    if "symbol" in names:
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {quote(index_name(target.name, 'symbol_time'))} "
            f"ON {table} (symbol, {quote(target.time_column)})"
        )
    return statements


def to_pg_arrow(batch: pa.Table, target: TableTarget) -> pa.Table:
    """Convert a canonical batch to the exact Arrow types of the PostgreSQL table."""
    arrays = []
    fields = []
    for column in pg_columns(target.schema, target.key):
        source = batch.column(column.source)
        if column.part == "us":
            array = source.cast(_TS_US, safe=False)  # truncates to the microsecond
        elif column.part == "ns":
            array = pc.cast(source, pa.int64())
        else:
            array = source.cast(column.arrow_type)
        arrays.append(array)
        fields.append(pa.field(column.name, column.arrow_type, nullable=not column.not_null))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def canonical_ddl() -> str:
    """The DDL of every canonical table, as committed in sql/002_tables.sql."""
    from histetl.schemas import all_specs

    parts = [
        "-- histetl migration 002: one table per canonical schema (generated by `just sql`"
        " from histetl/schemas.py;\n-- tests/targets/postgres/test_schema.py fails when it is"
        " stale)."
    ]
    for spec in all_specs():
        target = TableTarget(spec.table, spec.arrow_schema, spec.key, spec.index_ts)
        parts.extend(statement + ";" for statement in create_table_sql(target))
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    print(canonical_ddl(), end="")
