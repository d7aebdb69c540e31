"""`histetl query`: loaded rows back out, exactly, from DuckDB or PostgreSQL/TimescaleDB, read
through `histetl.read.database.Database`.

Symbols resolve per table: a continuous symbol (`ES.c.0`) through the `symbol` column, a raw
symbol (`ESH4`) through the `symbol` column and, when definitions are loaded, their
`raw_symbol` -> instrument_id, a parent (`ES.FUT`, `ES.OPT`) through the definitions' `asset`
and `instrument_class` (or, without definitions, the raw symbols in the `symbol` column).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from histetl.errors import ConfigError, first_line
from histetl.outputs import OutputError, open_output
from histetl.read.database import Database, spec_for
from histetl.sqltext import literal, quote
from histetl.times import format_ns, parse_time

Format = Literal["table", "csv", "json", "parquet"]
FORMATS: tuple[str, ...] = ("table", "csv", "json", "parquet")
DEFINITION_TABLE = "definition"
PARENT_CLASSES: dict[str, tuple[str, ...]] = {"FUT": ("F", "S"), "OPT": ("C", "P", "T", "M")}
_CONTINUOUS = re.compile(r"^[A-Za-z0-9]+\.[cnv]\.\d+$")
_PARENT = re.compile(r"^(?P<root>[A-Za-z0-9]+)\.(?P<kind>FUT|OPT)$")


def split_list(values: Sequence[str]) -> tuple[str, ...]:
    """`--symbols ES.c.0,NQ.c.0 --symbols CL.c.0` -> ("ES.c.0", "NQ.c.0", "CL.c.0")."""
    items = (item.strip() for value in values for item in value.split(","))
    return tuple(dict.fromkeys(item for item in items if item))


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
    try:
        return _write_to(result, fmt, out)
    except OSError as exc:  # a closed pipe stops quietly (_write_text); anything else fails
        raise OutputError(
            f"cannot write the rows to stdout: {exc.strerror or first_line(exc)}",
            where="query",
            hint="check the free space where stdout goes, or write a file with -o (an existing "
            "file is left unchanged when writing fails)",
        ) from None


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
