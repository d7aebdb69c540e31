"""Commands that read: query, verify, resample, quarantine, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import click

from histetl.cli.common import db_option, handle_errors, report_option, target
from histetl.errors import EXIT_FAILED, ConfigError, HistetlError


@click.command()
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--quarantine-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("quarantine"),
    show_default=True,
    help="Where to look for quarantine files when no PATH is given.",
)
@click.option(
    "--rows", type=click.IntRange(min=0), default=10, show_default=True, help="Sample rows to show."
)
@handle_errors
def quarantine(path: Path | None, quarantine_dir: Path, rows: int) -> None:
    """List quarantine files, or show one (rule counts and a sample of rows)."""
    import shutil

    import polars as pl

    from histetl.quarantine import (
        check_file,
        list_quarantine,
        rule_columns,
        rule_counts,
        rule_expressions,
        sample,
    )
    from histetl.validate import SOURCE_COLUMN

    if path is None or path.is_dir():
        files = list_quarantine(path or quarantine_dir)
        if not files:
            click.echo(f"no quarantine files under {path or quarantine_dir}")
        for f in files:
            try:
                counts = ", ".join(f"{k}: {v}" for k, v in rule_counts(f).items())
            except HistetlError as exc:
                counts = f"unreadable: {exc.what}"
            click.echo(f"{f}  ({counts})")
        return
    columns = check_file(path)
    expressions = rule_expressions(path)
    for name, count in rule_counts(path).items():
        expr = expressions.get(name)
        read = ", ".join(rule_columns(expr, columns)) if expr else ""
        shown = f"  {expr}" if expr else ""
        click.echo(f"{count:>8}  {name}{shown}" + (f"  (reads {read})" if read else ""))
    rows_shown = sample(path, rows)
    if SOURCE_COLUMN in rows_shown.columns and rows_shown.height:
        click.echo(f"source: {rows_shown[SOURCE_COLUMN][0]}")
        rows_shown = rows_shown.drop(SOURCE_COLUMN)
    with pl.Config(
        tbl_rows=rows,
        tbl_cols=12,
        fmt_str_lengths=40,
        tbl_width_chars=max(shutil.get_terminal_size().columns, 160),
        tbl_hide_column_data_types=True,
    ):
        click.echo(rows_shown)


@click.command("report")
@click.argument("report_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the data-quality page here (and FILE's .figures.json sidecar).",
)
@click.option(
    "--db",
    default=None,
    metavar="URI",
    help="The run's target: figures from one query per table (without it: counts and rules only).",
)
@handle_errors
def report_command(report_file: Path, html_path: Path, db: str | None) -> None:
    """Build the data-quality page of a saved run report (`replay/run --report FILE`)."""
    from histetl.outputs import check_outputs
    from histetl.quality.build import from_report_file, write

    check_outputs([("--html", html_path)], [("REPORT_FILE", report_file)])
    page, sidecar = write(html_path, from_report_file(report_file, db))
    click.echo(f"report page: {page} (figures: {sidecar})")


@click.command("query")
@db_option
@click.option(
    "--schema",
    required=True,
    metavar="SCHEMA",
    help="What to read: a DBN schema (ohlcv-1m, trades, definition...) or derived bars (ohlcv-5m).",
)
@click.option(
    "--symbols",
    multiple=True,
    metavar="SYMBOLS",
    help="Comma-separated; repeatable. Continuous (ES.c.0), raw (ESH4) or parent (ES.FUT) "
    "symbols, resolved through the loaded mappings and definitions. Default: all.",
)
@click.option(
    "--start",
    metavar="TIME",
    help="From this time (inclusive): 2023-12-14, 2023-12-14T14:30, "
    "2023-12-14T14:30:00.123456789Z, a +HH:MM offset, or epoch nanoseconds. UTC unless an "
    "offset is given.",
)
@click.option("--end", metavar="TIME", help="Up to this time (exclusive); same forms as --start.")
@click.option(
    "--columns",
    multiple=True,
    metavar="COLUMNS",
    help="Comma-separated; repeatable. Default: every column of the table.",
)
@click.option("--limit", type=click.IntRange(min=0), help="At most this many rows.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "parquet"]),
    default="table",
    show_default=True,
    help="table (aligned text), csv, json (JSON Lines) or parquet (needs -o). Timestamps "
    "and prices are exact: ISO 8601 with nanoseconds and fixed-point decimals in text, "
    "timestamp[ns, UTC] and decimal128(19,9) in Parquet.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of stdout.",
)
@handle_errors
def query_command(
    db: str | None,
    schema: str,
    symbols: tuple[str, ...],
    start: str | None,
    end: str | None,
    columns: tuple[str, ...],
    limit: int | None,
    fmt: str,
    output: Path | None,
) -> None:
    """Read loaded rows back, streamed, in the same columns from DuckDB or PostgreSQL.

    Rows are ordered by the index timestamp (ts_recv, ts_event for bars), instrument_id and
    record_hash. An empty result is not an error: it says so on stderr and exits 0.
    """
    from histetl.outputs import OutputError, check_output
    from histetl.read.query import QueryOptions, export, split_list

    options = QueryOptions(
        db=target(db),
        schema=schema,
        symbols=split_list(symbols),
        start=start,
        end=end,
        columns=split_list(columns),
        limit=limit,
    )
    if output is not None:
        check_output(output, "-o")
    stdout = _binary_stdout() if output is None else None
    try:
        result = export(options, fmt, stdout, output)
    except OutputError:
        if stdout is not None:
            _drop_stdout()  # what stdout still buffers cannot be written either
        raise
    if result.reader_gone:  # `histetl query ... | head`: stop quietly, like other tools
        _drop_stdout()
        return
    if result.rows == 0:
        click.echo(f"no rows for {result.description}", err=True)
    elif output is not None:
        click.echo(f"wrote {result.rows} rows to {output}", err=True)


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush of what it buffers
    neither fails nor prints at exit."""
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _binary_stdout() -> IO[bytes]:
    """stdout for bytes, buffered even under PYTHONUNBUFFERED: there it is a raw FileIO,
    whose write may take only part of what it is given (a full disk) and say so only in its
    return value; a buffered writer writes it all or raises."""
    import io

    out = sys.stdout.buffer
    if isinstance(out, io.RawIOBase):
        return open(out.fileno(), "wb", closefd=False)  # stdout stays open
    return out


@click.command("verify")
@db_option
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="TABLE",
    help="Check only this table or schema (ohlcv_1m, ohlcv-5m); repeatable. Default: every "
    "loaded table.",
)
@click.option(
    "--check",
    "checks",
    multiple=True,
    type=click.Choice(["duplicates", "rules", "ledger", "gaps", "definitions"]),
    help="Run only this check; repeatable. Default: all.",
)
@click.option("--start", metavar="TIME", help="Check only rows from this time (as in query).")
@click.option(
    "--end", metavar="TIME", help="Check only rows before this time (the ledger check is skipped)."
)
@click.option(
    "--rules",
    "rules_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Extra rules YAML, as given to replay/run; repeatable.",
)
@click.option(
    "--calendar",
    default="auto",
    show_default=True,
    metavar="NAME|FILE",
    help="Trading sessions for the gap check: auto (by the table's dataset), cme-globex, "
    "us-equity, 24x7, or a calendar YAML file.",
)
@click.option(
    "--no-status",
    is_flag=True,
    help="Ignore loaded status messages: sessions from the calendar only.",
)
@click.option(
    "--min-gap",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Report only holes of at least this many missing bars.",
)
@report_option("Also write the results as JSON to this file.")
@handle_errors
def verify_command(
    db: str | None,
    tables: tuple[str, ...],
    checks: tuple[str, ...],
    start: str | None,
    end: str | None,
    rules_files: tuple[Path, ...],
    calendar: str,
    no_status: bool,
    min_gap: int,
    report_path: Path | None,
) -> None:
    """Integrity checks on a loaded database; exit 1 when any fails (for monitoring).

    Duplicate keys, rows breaking the active error rules, row counts against the load ledger,
    bars missing inside trading sessions, instruments without definitions.
    """
    from histetl.outputs import check_output
    from histetl.read.verify import CHECKS, VerifyOptions, verify

    options = VerifyOptions(
        db=target(db),
        tables=tables,
        checks=checks or CHECKS,
        start=start,
        end=end,
        rules_files=rules_files,
        calendar=calendar,
        min_gap=min_gap,
        use_status=not no_status,
    )
    if report_path is not None:
        check_output(report_path, "--report")
    report = verify(options)
    click.echo(report.text())
    if report_path is not None:
        report.write_json(report_path)
    if report.failed:
        sys.exit(EXIT_FAILED)


@click.command("resample")
@db_option
@click.option(
    "--interval",
    "intervals",
    multiple=True,
    required=True,
    metavar="N[smhd]",
    help="Bar interval to derive: 5m, 15m, 60m, 4h...; repeatable. Stored as ohlcv_<interval>.",
)
@click.option(
    "--from",
    "source",
    type=click.Choice(["ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d"]),
    default="ohlcv-1m",
    show_default=True,
    help="Source bars.",
)
@click.option("--start", metavar="TIME", help="Only the windows (UTC days) from this time.")
@click.option("--end", metavar="TIME", help="Only the windows before this time.")
@click.option(
    "--table",
    metavar="NAME",
    help="Target table instead of ohlcv_<interval> (with a single --interval).",
)
@handle_errors
def resample_command(
    db: str | None,
    intervals: tuple[str, ...],
    source: str,
    start: str | None,
    end: str | None,
    table: str | None,
) -> None:
    """Derive OHLCV bars of any multiple of the source interval and store them like the source.

    Whole windows (about a UTC day) are recomputed and replaced in one transaction each, so a
    rerun after late data corrects the bars.
    """
    from histetl.read.resample import ResampleOptions, check_options, resample

    if table and len(intervals) > 1:
        raise ConfigError("--table needs a single --interval", where="--table")
    uri = target(db)
    runs = [ResampleOptions(uri, interval, source, start, end, table) for interval in intervals]
    for options in runs:  # every interval checked before any work
        check_options(options)
    for options in runs:
        click.echo(resample(options).summary())
