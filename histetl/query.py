"""`histetl query`: loaded rows back out, exactly, from DuckDB or PostgreSQL/TimescaleDB.

`Database` is read access to a loaded target over ADBC (the same drivers the sinks load with).
It presents every table in its canonical Arrow types whatever the backend stores:
timestamps `timestamp[ns, UTC]` (PostgreSQL's exact `X_ns` bigint, not the microsecond
`timestamptz`), prices `decimal128(19, 9)` (PostgreSQL numeric read as text, never as float),
unsigned integers unsigned again. Results are Arrow record batch streams: the DuckDB driver
streams its result, and the PostgreSQL driver streams it with COPY as long as the statement has
no bind parameters, so values are inlined as SQL literals (`literal`).

Symbols resolve per table: a continuous symbol (`ES.c.0`) through the `symbol` column, a raw
symbol (`ESH4`) through the `symbol` column and, when definitions are loaded, their
`raw_symbol` -> instrument_id, a parent (`ES.FUT`, `ES.OPT`) through the definitions' `asset`
and `instrument_class` (or, without definitions, the raw symbols in the `symbol` column).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from histetl.dbn import SUPPORTED_SCHEMAS
from histetl.errors import ConfigError, HistetlError, LoadError, first_line
from histetl.outputs import open_output
from histetl.schemas import TS_TYPE, TableSpec, table_spec
from histetl.sinks import backend_of, redact

Backend = Literal["duckdb", "postgres"]
Format = Literal["table", "csv", "json", "parquet"]
FORMATS: tuple[str, ...] = ("table", "csv", "json", "parquet")
DEFINITION_TABLE = "definition"
DERIVED_BARS = re.compile(r"^ohlcv-(\d+)([smhd])$")
PARENT_CLASSES: dict[str, tuple[str, ...]] = {"FUT": ("F", "S"), "OPT": ("C", "P", "T", "M")}
_CONTINUOUS = re.compile(r"^[A-Za-z0-9]+\.[cnv]\.\d+$")
_PARENT = re.compile(r"^(?P<root>[A-Za-z0-9]+)\.(?P<kind>FUT|OPT)$")
_NS_SUFFIX = "_ns"
_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# -- values --------------------------------------------------------------------------------------


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str | int) -> str:
    """A SQL literal (both backends): results stream only from statements without parameters."""
    if isinstance(value, int):
        return str(int(value))
    if "\x00" in value:
        raise ConfigError(f"NUL character in {value!r}")
    return "'" + value.replace("'", "''") + "'"


def split_list(values: Sequence[str]) -> tuple[str, ...]:
    """`--symbols ES.c.0,NQ.c.0 --symbols CL.c.0` -> ("ES.c.0", "NQ.c.0", "CL.c.0")."""
    items = (item.strip() for value in values for item in value.split(","))
    return tuple(dict.fromkeys(item for item in items if item))


def parse_time(text: str, where: str) -> int:
    """Nanoseconds since the epoch from `2023-12-14`, `2023-12-14T14:30`,
    `2023-12-14 14:30:00.123456789Z`, `...+01:00` (no offset means UTC) or integer ns."""
    text = text.strip()
    if re.fullmatch(r"-?\d{10,}", text):
        return int(text)
    match = _TIME.match(text)
    try:
        if match is None:
            raise ValueError(text)
        day, hour, minute, second, frac, offset = match.groups()
        stamp = dt.datetime.fromisoformat(
            f"{day}T{hour or '00'}:{minute or '00'}:{second or '00'}"
            + ("+00:00" if offset in (None, "Z") else offset)
        )
    except ValueError:
        raise ConfigError(
            f"cannot read {text!r} as a time",
            where=where,
            hint="use 2023-12-14, 2023-12-14T14:30, 2023-12-14T14:30:00.123456789Z, "
            "a +HH:MM offset, or nanoseconds since the epoch",
        ) from None
    seconds = (stamp - _EPOCH) // dt.timedelta(seconds=1)
    return seconds * 10**9 + int((frac or "0").ljust(9, "0"))


def format_ns(ns: int) -> str:
    stamp = _EPOCH + dt.timedelta(seconds=ns // 10**9)
    frac = ns % 10**9
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac:09d}" if frac else "") + "Z"


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

            from histetl.sinks import duckdb_path

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
        from histetl.sinks import RetryPolicy
        from histetl.sinks.postgres import connect

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
                out.append(f"{quote(column)} >= {_ts_literal(start_ns)}::TIMESTAMPTZ_NS")
            if end_ns is not None:
                out.append(f"{quote(column)} < {_ts_literal(end_ns)}::TIMESTAMPTZ_NS")
            return out
        exact = quote(column + _NS_SUFFIX)
        if start_ns is not None:
            floor_us = start_ns // 1000 * 1000
            out.append(f"{quote(column)} >= {_ts_literal(floor_us)}::timestamptz")
            out.append(f"{exact} >= {int(start_ns)}")
        if end_ns is not None:
            last_us = (end_ns - 1) // 1000 * 1000
            out.append(f"{quote(column)} <= {_ts_literal(last_us)}::timestamptz")
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


def _ts_literal(ns: int) -> str:
    stamp = _EPOCH + dt.timedelta(seconds=ns // 10**9)
    return f"'{stamp:%Y-%m-%d %H:%M:%S}.{ns % 10**9:09d}+00'"


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


# -- symbols --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolFilter:
    """What the requested symbols matched: values of the `symbol` column, instrument ids."""

    symbols: tuple[str, ...] = ()
    instrument_ids: tuple[int, ...] = ()

    def sql(self) -> str:
        parts = []
        if self.symbols:
            parts.append(f"symbol IN ({', '.join(literal(s) for s in self.symbols)})")
        if self.instrument_ids:
            ids = ", ".join(str(int(i)) for i in self.instrument_ids)
            parts.append(f"instrument_id IN ({ids})")
        return " OR ".join(parts) if parts else "FALSE"


def resolve_symbols(db: Database, table: str, requested: Sequence[str]) -> SymbolFilter:
    """Resolve continuous, raw and parent symbols for `table`; ConfigError naming the unknown
    ones with close matches."""
    names = set(db.column_names(table))
    if "symbol" not in names and "instrument_id" not in names:
        raise ConfigError(f"table {table} has no symbol or instrument_id column", where="--symbols")
    definitions = DEFINITION_TABLE in db.tables() and {
        "raw_symbol",
        "instrument_id",
        "asset",
        "instrument_class",
    } <= set(db.column_names(DEFINITION_TABLE))
    symbols: list[str] = []
    ids: list[int] = []
    unknown: list[str] = []
    for symbol in dict.fromkeys(requested):
        found_symbols = [symbol] if "symbol" in names and _has_symbol(db, table, symbol) else []
        found_ids: list[int] = []
        parent = _PARENT.match(symbol)
        if parent:
            root, kind = parent["root"], parent["kind"]
            if definitions:
                classes = ", ".join(literal(c) for c in PARENT_CLASSES[kind])
                found_ids = _ids(
                    db,
                    f"asset = {literal(root)} AND instrument_class IN ({classes})",
                )
            if kind == "FUT" and "symbol" in names:
                found_symbols += _futures_in_table(db, table, root)
        elif definitions and not _CONTINUOUS.match(symbol):
            found_ids = _ids(db, f"raw_symbol = {literal(symbol)}")
        if not found_symbols and not found_ids:
            unknown.append(symbol)
        symbols += found_symbols
        ids += found_ids
    if unknown:
        raise _unknown_symbols(db, table, unknown, definitions)
    return SymbolFilter(tuple(dict.fromkeys(symbols)), tuple(sorted(set(ids))))


def _has_symbol(db: Database, table: str, symbol: str) -> bool:
    return bool(db.rows(f"SELECT 1 FROM {quote(table)} WHERE symbol = {literal(symbol)} LIMIT 1"))


def _ids(db: Database, condition: str) -> list[int]:
    rows = db.rows(f"SELECT DISTINCT instrument_id FROM {DEFINITION_TABLE} WHERE {condition}")
    return [int(r[0]) for r in rows]


def _futures_in_table(db: Database, table: str, root: str) -> list[str]:
    """Raw future and spread symbols of `root` in the table's symbol column (parent requests
    load each contract under its raw symbol)."""
    outright = f"{re.escape(root)}[FGHJKMNQUVXZ]\\d{{1,4}}"
    pattern = re.compile(f"^{outright}([-:]{outright})*$")
    like = root.replace("%", "").replace("_", "") + "%"
    rows = db.rows(f"SELECT DISTINCT symbol FROM {quote(table)} WHERE symbol LIKE {literal(like)}")
    return sorted(str(r[0]) for r in rows if r[0] is not None and pattern.match(str(r[0])))


def _unknown_symbols(
    db: Database, table: str, unknown: list[str], definitions: bool
) -> ConfigError:
    known = {str(r[0]) for r in db.rows(f"SELECT DISTINCT symbol FROM {quote(table)}") if r[0]}
    if definitions:
        rows = db.rows(f"SELECT DISTINCT raw_symbol, asset FROM {DEFINITION_TABLE}")
        known |= {str(r[0]) for r in rows if r[0]}
        known |= {f"{r[1]}.FUT" for r in rows if r[1]}
    parts = []
    for symbol in unknown:
        close = difflib.get_close_matches(symbol, sorted(known), n=4, cutoff=0.5)
        parts.append(f"{symbol} (close matches: {', '.join(close)})" if close else symbol)
    sample = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
    return ConfigError(
        f"unknown symbol{'s' if len(unknown) > 1 else ''} in {table}: {'; '.join(parts)}",
        where="--symbols",
        hint=f"symbols in {table}" + (" and definitions" if definitions else "") + f": {sample}"
        if known
        else f"{table} is empty",
    )


# -- the query ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryOptions:
    """What `histetl query` asks for. Times: see `parse_time`; end is exclusive."""

    db: str
    schema: str
    symbols: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None
    columns: tuple[str, ...] = ()
    limit: int | None = None


def table_for_schema(db: Database, schema: str) -> tuple[str, str]:
    """(table, time column) of a schema name; ConfigError for an unknown or unloaded one."""
    spec = spec_for(schema)
    table = schema.replace("-", "_")
    if spec is None or table not in db.tables():
        loaded = sorted(t for t in db.tables() if spec_for(t) is not None and db.has_rows(t))
        close = difflib.get_close_matches(schema, [t.replace("_", "-") for t in loaded], n=3)
        what = "unknown schema" if spec is None else "nothing loaded for schema"
        raise ConfigError(
            f"{what} {schema!r}" + (f" (close matches: {', '.join(close)})" if close else ""),
            where="--schema",
            hint=f"loaded: {', '.join(t.replace('_', '-') for t in loaded) or 'nothing'}",
        )
    time_column = spec.index_ts
    if time_column not in db.column_names(table):
        raise ConfigError(f"table {table} has no {time_column} column", where="--schema")
    return table, time_column


@dataclass
class QueryResult:
    """An open query: `reader` streams the rows; close (or use `with`) when done."""

    table: str
    description: str
    reader: pa.RecordBatchReader
    db: Database
    rows: int = field(default=0)
    reader_gone: bool = False  # the output was a pipe its reader closed (`| head`)

    def __enter__(self) -> QueryResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def batches(self) -> Iterator[pa.RecordBatch]:
        for batch in self.reader:
            self.rows += batch.num_rows
            yield batch


def run_query(options: QueryOptions) -> QueryResult:
    """Check the options against the database and start streaming the rows."""
    start = parse_time(options.start, "--start") if options.start else None
    end = parse_time(options.end, "--end") if options.end else None
    if start is not None and end is not None and start >= end:
        raise ConfigError(
            f"--start {options.start} is not before --end {options.end}",
            where="--start/--end",
            hint="the range is [start, end): end is exclusive",
        )
    if options.limit is not None and options.limit < 0:
        raise ConfigError("--limit must not be negative", where="--limit")
    db = Database.open(options.db)
    try:
        table, time_column = table_for_schema(db, options.schema)
        names = db.column_names(table)
        columns = list(dict.fromkeys(options.columns))
        missing = [c for c in columns if c not in names]
        if missing:
            close = {c: difflib.get_close_matches(c, names, n=2) for c in missing}
            shown = "; ".join(f"{c} (close: {', '.join(m)})" if m else c for c, m in close.items())
            raise ConfigError(
                f"unknown column{'s' if len(missing) > 1 else ''} in {table}: {shown}",
                where="--columns",
                hint=f"columns: {', '.join(names)}",
            )
        where = db.time_range(time_column, start, end)
        if options.symbols:
            where.append(resolve_symbols(db, table, options.symbols).sql())
        order = [db.time_order(time_column)]
        order += [quote(c) for c in ("instrument_id", "record_hash") if c in names]
        reader = db.read(table, columns or None, where, ", ".join(order), options.limit)
    except BaseException:
        db.close()
        raise
    span = f"from {format_ns(start) if start is not None else 'the first row'} to " + (
        f"{format_ns(end)} (exclusive)" if end is not None else "the last row"
    )
    what = ", ".join(options.symbols) if options.symbols else "any symbol"
    return QueryResult(table, f"{what} in {table} {span}", reader, db)


def query_table(options: QueryOptions) -> pa.Table:
    """The whole result in memory (for Python use and tests; the CLI streams)."""
    with run_query(options) as result:
        return result.reader.read_all()


# -- output ---------------------------------------------------------------------------------------


def _text_frame(batch: pa.RecordBatch) -> pl.DataFrame:
    """Exact text for timestamps (ISO 8601, nanoseconds, Z) and decimals (fixed point)."""
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    conversions = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.Datetime):
            conversions.append(
                pl.col(name).dt.convert_time_zone("UTC").dt.to_string("%Y-%m-%dT%H:%M:%S%.9fZ")
                if dtype.time_zone
                else pl.col(name).dt.to_string("%Y-%m-%dT%H:%M:%S%.9f")
            )
        elif isinstance(dtype, pl.Decimal):
            conversions.append(pl.col(name).cast(pl.String))
    return frame.with_columns(conversions) if conversions else frame


class _TableWriter:
    """Aligned text columns; widths come from the header and the first batch."""

    def __init__(self, out: IO[bytes], names: list[str]) -> None:
        self.out = out
        self.names = names
        self.widths: list[int] | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        frame = _text_frame(batch).select(pl.all().cast(pl.String).fill_null(""))
        if self.widths is None:
            self.widths = [
                max(len(n), int(frame[n].str.len_chars().fill_null(0).max() or 0))  # type: ignore[arg-type]
                for n in self.names
            ]
            header = "  ".join(n.ljust(w) for n, w in zip(self.names, self.widths, strict=True))
            self.out.write((header.rstrip() + "\n").encode())
        lines = frame.select(
            pl.concat_str(
                [pl.col(n).str.pad_end(w) for n, w in zip(self.names, self.widths, strict=True)],
                separator="  ",
            ).str.strip_chars_end()
        ).to_series()
        self.out.write(("\n".join(lines.to_list()) + "\n").encode())


def write_result(
    result: QueryResult, fmt: str, out: IO[bytes] | None, path: Path | None = None
) -> int:
    """Stream the rows to `path` (or the binary stream `out`) as table, csv, json (JSON
    Lines) or parquet; returns the row count. Timestamps and prices stay exact: text formats
    write them as ISO 8601 with nanoseconds and fixed-point decimals, Parquet keeps the Arrow
    types."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}", where="--format", hint=", ".join(FORMATS))
    if fmt == "parquet" and path is None:
        raise ConfigError("parquet needs an output file", where="--format", hint="add -o FILE")
    if path is not None:
        with open_output(path, "-o") as handle:
            return _write_to(result, fmt, handle)
    if out is None:
        raise ConfigError("no output given", where="-o")
    return _write_to(result, fmt, out)


def _write_to(result: QueryResult, fmt: str, out: IO[bytes]) -> int:
    if fmt == "parquet":
        with pq.ParquetWriter(out, result.reader.schema) as writer:
            for batch in result.batches():
                writer.write_batch(batch)
        return result.rows
    return _write_text(result, fmt, out)


def _write_text(result: QueryResult, fmt: str, out: IO[bytes]) -> int:
    names = result.reader.schema.names
    table = _TableWriter(out, names)
    first = True
    try:
        for batch in result.batches():
            if fmt == "table":
                table.write(batch)
            elif fmt == "csv":
                _text_frame(batch).write_csv(out, include_header=first)
            else:
                _text_frame(batch).write_ndjson(out)
            first = False
        if first and fmt == "csv":  # no rows: still a header
            out.write((",".join(names) + "\n").encode())
        out.flush()
    except OSError as exc:  # polars reports a closed pipe as a plain OSError
        if not (isinstance(exc, BrokenPipeError) or "broken pipe" in str(exc).lower()):
            raise
        result.reader_gone = True
    return result.rows


def export(
    options: QueryOptions, fmt: str, out: IO[bytes] | None, path: Path | None
) -> QueryResult:
    """`histetl query` as one call: run the query and stream it out; the result says how many
    rows were written and what was asked for."""
    if fmt == "parquet" and path is None:
        raise ConfigError("parquet needs an output file", where="--format", hint="add -o FILE")
    with run_query(options) as result:
        write_result(result, fmt, out, path)
    return result
