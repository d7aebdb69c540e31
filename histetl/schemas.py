"""Canonical tables: one declared Arrow schema per supported DBN schema.

Column names and order are the ones `databento.DBNStore.to_df()` shows, taken from the record
classes of `databento_dbn` (the latest DBN version, v3), so a Databento user's knowledge
transfers. Types are exact: prices decimal128(19, 9) (DBN fixed-point 1e-9), timestamps
timestamp[ns, UTC], integers keep their width and sign, char and string fields are strings.

Two columns are added to every table: `record_hash`, a 64-bit hash of the record's bytes, and
`symbol` (from the file's symbology mappings). The primary key is
`(index timestamp, instrument_id, record_hash)`: several trades of one exchange packet share
instrument_id, ts_recv, ts_event and sequence and all of them load, while a byte-identical record
(replayed file, overlapping download) collapses onto the one already loaded.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from functools import cache
from typing import Any

import pyarrow as pa
from databento_dbn import v1, v2, v3

from histetl.dbn import RECORDS as _RECORDS
from histetl.dbn import SUPPORTED_SCHEMAS, table_name

PRICE_TYPE = pa.decimal128(19, 9)
TS_TYPE = pa.timestamp("ns", tz="UTC")
SYMBOL_COLUMN = "symbol"
HASH_COLUMN = "record_hash"

DBN_VERSIONS: dict[int, types.ModuleType] = {1: v1, 2: v2, 3: v3}

_INT_TYPES = {
    "i1": pa.int8(), "i2": pa.int16(), "i4": pa.int32(), "i8": pa.int64(),
    "u1": pa.uint8(), "u2": pa.uint16(), "u4": pa.uint32(), "u8": pa.uint64(),
}  # fmt: skip

# Statistic types whose value is a price (`price` set, `quantity` undefined); the rest carry a
# quantity. From databento_dbn.StatType.
PRICE_STAT_TYPES: frozenset[int] = frozenset(
    {1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24, 25, 26, 10002}
)
QUANTITY_STAT_TYPES: frozenset[int] = frozenset({6, 9, 19, 10001})


class ColumnKind:
    PRICE = "price"
    TIMESTAMP = "timestamp"
    INTEGER = "integer"
    STRING = "string"


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    kind: str
    dbn_dtype: str | None = None  # numpy dtype string in the v3 record, None for added columns


@dataclass(frozen=True)
class TableSpec:
    """The canonical table of one DBN schema."""

    schema: str
    table: str
    record_name: str
    rtypes: tuple[int, ...]
    columns: tuple[Column, ...]
    index_ts: str

    @property
    def key(self) -> tuple[str, ...]:
        return (self.index_ts, "instrument_id", HASH_COLUMN)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.type, nullable=c.name not in self.key) for c in self.columns]
        )

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def record_class(self, version: int) -> Any:
        """The databento_dbn record class of this schema in DBN `version`."""
        return getattr(DBN_VERSIONS[version], self.record_name)


def _column(name: str, dtype: str, record: Any) -> Column:
    if name in record._price_fields:
        return Column(name, PRICE_TYPE, ColumnKind.PRICE, dtype)
    if name in record._timestamp_fields:
        return Column(name, TS_TYPE, ColumnKind.TIMESTAMP, dtype)
    if dtype.startswith("S"):
        return Column(name, pa.string(), ColumnKind.STRING, dtype)
    return Column(name, _INT_TYPES[dtype], ColumnKind.INTEGER, dtype)


@cache
def table_spec(schema: str) -> TableSpec:
    """The canonical table for a DBN schema name such as "ohlcv-1m" or "trades"."""
    if schema not in _RECORDS:
        raise KeyError(schema)
    record_name, rtypes = _RECORDS[schema]
    latest = getattr(v3, record_name)
    dtypes = dict(latest._dtypes)
    columns = [_column(name, dtypes[name], latest) for name in latest._ordered_fields]
    # Fields of older DBN versions that v3 dropped stay as nullable columns: nothing is lost
    # when v1/v2 files are replayed (e.g. trading_reference_price in v1/v2 definitions).
    known = set(dtypes)
    for version in (2, 1):
        older = getattr(DBN_VERSIONS[version], record_name)
        older_dtypes = dict(older._dtypes)
        for name in older._ordered_fields:
            if name not in known:
                columns.append(_column(name, older_dtypes[name], older))
                known.add(name)
    columns.append(Column(HASH_COLUMN, pa.int64(), ColumnKind.INTEGER))
    columns.append(Column(SYMBOL_COLUMN, pa.string(), ColumnKind.STRING))
    return TableSpec(
        schema=schema,
        table=table_name(schema),
        record_name=record_name,
        rtypes=rtypes,
        columns=tuple(columns),
        index_ts=latest._ordered_fields[0],
    )


def all_specs() -> list[TableSpec]:
    return [table_spec(schema) for schema in SUPPORTED_SCHEMAS]
