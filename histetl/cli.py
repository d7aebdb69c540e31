"""The `histetl` command line: thin commands over the library.

Each command parses its options, calls one library function and prints its report. A
`HistetlError` becomes a one-line message (no traceback) and its exit code:
0 ok, 1 failed, 2 usage or configuration error, 3 finished with quarantined rows when
--fail-on-quarantine is set.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import polars as pl
from loguru import logger

from histetl import __version__
from histetl.cluster import CLUSTER_ENV
from histetl.config import DB_ENV_VAR, default_db
from histetl.errors import EXIT_FAILED, EXIT_QUARANTINED, ConfigError, HistetlError
from histetl.interrupt import stop_on_signals
from histetl.logs import configure, logger_level
from histetl.outputs import OutputError, check_output, write_json
from histetl.pipeline import Replayer, ReplayOptions, expand_paths, init_db, ledger
from histetl.quarantine import (
    check_file,
    list_quarantine,
    rule_columns,
    rule_counts,
    rule_expressions,
    sample,
)
from histetl.report import FileReport, RunReport
from histetl.sinks import RetryPolicy, TimescaleOptions
from histetl.synth import SUPPORTED_SCHEMAS as SYNTH_SCHEMAS
from histetl.validate import SOURCE_COLUMN

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn library errors into a message on stderr and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HistetlError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="histetl")
@click.option("-v", "--verbose", is_flag=True, help="Debug detail on stderr.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--log-json", is_flag=True, help="Logs as JSON lines (for log shippers).")
def main(verbose: bool, quiet: bool, log_json: bool) -> None:
    """histetl: load Databento historical data into DuckDB or TimescaleDB, validated and
    deduplicated."""
    configure(verbose=verbose, quiet=quiet, json_logs=log_json)


def _db_option(func: F) -> F:
    return click.option(
        "--db",
        default=None,
        metavar="URI",
        help=f"Target: duckdb:///path.duckdb, postgresql://user@host/db or delta:///lake "
        f"(default: ${DB_ENV_VAR}, else duckdb:///./histetl.duckdb).",
    )(func)


def _db_retry_options(func: F) -> F:
    """--db-retries and --db-retry-max-wait (RetryPolicy's defaults)."""
    func = click.option(
        "--db-retry-max-wait",
        type=click.FloatRange(min=0),
        default=RetryPolicy.max_wait_s,
        show_default=True,
        help="Longest backoff between attempts, in seconds.",
    )(func)
    return click.option(
        "--db-retries",
        type=click.IntRange(min=1),
        default=RetryPolicy.max_attempts,
        show_default=True,
        help="Attempts when the database is unreachable or drops the connection.",
    )(func)


def _db_timeout_options(func: F) -> F:
    """--db-timeout and --lock-timeout (RetryPolicy's defaults; `connect_timeout` is a URI
    parameter, default 10 s)."""
    func = click.option(
        "--lock-timeout",
        type=click.FloatRange(min=0),
        default=RetryPolicy.lock_timeout_s,
        show_default=True,
        metavar="SECONDS",
        help="Longest wait for another loader's lock (PostgreSQL day/table locks, the DuckDB "
        "file); then the file fails. 0 waits forever.",
    )(func)
    return click.option(
        "--db-timeout",
        type=click.FloatRange(min=0),
        default=RetryPolicy.timeout_s,
        show_default=True,
        metavar="SECONDS",
        help="Longest the PostgreSQL server may stay silent on a statement (no answer, no "
        "progress) before the connection is dropped and retried. 0 disables.",
    )(func)


def _cluster_options(func: F) -> F:
    func = click.option(
        "--max-db-writers",
        type=click.IntRange(min=1),
        default=ReplayOptions.max_db_writers,
        show_default=True,
        help="With --cluster: at most this many files load into the database at once.",
    )(func)
    return click.option(
        "--cluster",
        default=None,
        metavar="URI",
        envvar=CLUSTER_ENV,
        help="Run the files as tasks on Dask: tcp://HOST:PORT (a running `dask scheduler`), "
        f"local or local:N (N worker processes started here); default ${CLUSTER_ENV}. Needs "
        "the cluster extra.",
    )(func)


def _print_file(report: FileReport) -> None:
    if report.status == "failed":
        logger.error("{} failed: {}", report.path, report.error)
    elif report.status == "skipped":
        logger.info("{}: already loaded ({} records), skipped", report.path, report.skipped)
    else:
        logger.info(
            "{}: {} records, {} loaded, {} duplicates, {} quarantined ({:.2f}s)",
            report.path,
            report.records,
            report.loaded,
            report.duplicates,
            report.quarantined,
            report.seconds,
        )


class Progress:
    """One redrawn status line per file on a terminal (records, rate, ETA); nothing when
    stderr is not a terminal (cron, CI), where each file gets one log line instead."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty() and logger_level() <= 20
        self._started: dict[str, float] = {}
        self._drawn = False

    def update(self, report: FileReport, fraction: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        started = self._started.setdefault(report.path, now)
        elapsed = now - started
        rate = report.records / elapsed if elapsed > 0 else 0.0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        line = (
            f"{Path(report.path).name}: {fraction:6.1%}  {report.records:>12,} records  "
            f"{rate:>10,.0f}/s  ETA {eta:5.0f}s"
        )
        sys.stderr.write("\r" + line[: shutil.get_terminal_size().columns - 1])
        sys.stderr.flush()
        self._drawn = True

    def wrap(self, on_file: Callable[[FileReport], None]) -> Callable[[FileReport], None]:
        def done(report: FileReport) -> None:
            self.clear()
            on_file(report)

        return done

    def count(
        self, total: int, on_file: Callable[[FileReport], None]
    ) -> Callable[[FileReport], None]:
        """For a cluster, where per-batch progress stays on the workers: "N/M files"."""
        finished = 0

        def done(report: FileReport) -> None:
            nonlocal finished
            finished += 1
            on_file(report)
            if self.enabled:
                sys.stderr.write(f"\r{finished}/{total} files done across the cluster")
                sys.stderr.flush()
                self._drawn = True

        return done

    def clear(self) -> None:
        if self._drawn:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


def _finish(report: RunReport, report_path: Path | None, fail_on_quarantine: bool) -> None:
    click.echo(report.table())
    if report_path is not None:
        report.write_json(report_path)
        click.echo(f"report: {report_path}")
    quarantined = [f for f in report.files if f.quarantine_file]
    for f in quarantined:
        click.echo(f"quarantined {f.quarantined} rows of {Path(f.path).name}: {f.quarantine_file}")
    if report.failed:
        click.echo(f"{len(report.failed)} file(s) failed; see the messages above", err=True)
        sys.exit(EXIT_FAILED)
    if fail_on_quarantine and report.totals["quarantined"]:
        sys.exit(EXIT_QUARANTINED)


@main.command()
@click.argument("paths", nargs=-1, required=True)
@_db_option
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run report as JSON to this file.",
)
@click.option(
    "--validate-only", is_flag=True, help="Decode, map and validate without loading anything."
)
@click.option("--force", is_flag=True, help="Reprocess files the ledger says are loaded.")
@click.option(
    "--rules",
    "rules_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Extra rules YAML (add, disable or re-grade rules); repeatable.",
)
@click.option(
    "--mapping",
    "mapping_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Column mapping YAML (rename, cast, derive, drop).",
)
@click.option(
    "--on-invalid",
    type=click.Choice(["quarantine", "fail"]),
    default="quarantine",
    show_default=True,
    help="Quarantine invalid rows, or reject the whole file.",
)
@click.option(
    "--quarantine-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("quarantine"),
    show_default=True,
    help="Where quarantine Parquet files go.",
)
@click.option(
    "--fail-on-quarantine",
    is_flag=True,
    help="Exit 3 when any row was quarantined (for cron alerts).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Load files in parallel with this many processes (PostgreSQL targets).",
)
@_cluster_options
@_db_retry_options
@click.option(
    "--batch-size",
    type=int,
    default=ReplayOptions.batch_size,
    show_default=True,
    help="Records per batch, 1 to 10,000,000; memory follows this, not the file size.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a data-quality report page (and FILE's .figures.json sidecar).",
)
@_db_timeout_options
@handle_errors
def replay(
    paths: tuple[str, ...],
    db: str | None,
    report_path: Path | None,
    validate_only: bool,
    force: bool,
    rules_files: tuple[Path, ...],
    mapping_file: Path | None,
    on_invalid: str,
    quarantine_dir: Path,
    fail_on_quarantine: bool,
    workers: int,
    cluster: str | None,
    max_db_writers: int,
    db_retries: int,
    db_retry_max_wait: float,
    batch_size: int,
    db_timeout: float,
    lock_timeout: float,
    html_path: Path | None,
) -> None:
    """Reprocess DBN files (paths, directories or globs) offline, exactly as a run would."""
    options = ReplayOptions(
        db=db or default_db(),
        batch_size=batch_size,
        force=force,
        validate_only=validate_only,
        on_invalid="fail" if on_invalid == "fail" else "quarantine",
        quarantine_dir=quarantine_dir,
        rules_files=rules_files,
        mapping_file=mapping_file,
        db_retry=RetryPolicy(
            db_retries, db_retry_max_wait, timeout_s=db_timeout, lock_timeout_s=lock_timeout
        ),
        workers=workers,
        cluster=cluster or None,
        max_db_writers=max_db_writers,
    )
    if report_path is not None:
        check_output(report_path, "--report")
    replayer = Replayer(options)
    files = expand_paths(paths)
    observer = _observe(replayer) if html_path is not None else None
    # SIGINT/SIGTERM: the file in progress is rolled back, no other starts, exit 130/143
    with stop_on_signals(), Progress() as progress:
        replayer.on_progress = progress.update
        on_file = progress.wrap(_print_file)
        if options.cluster is not None:
            on_file = progress.count(len(files), on_file)
        report = replayer.run(files, on_file=on_file)
    if html_path is not None and observer is not None:
        _write_page(html_path, report, observer, None if validate_only else options.db)
    _finish(report, report_path, fail_on_quarantine)


def _observe(replayer: Replayer) -> Any:
    from histetl.quality.build import observe  # charts and figures: only when asked for

    return observe(replayer)


def _write_page(html_path: Path, report: RunReport, observer: Any, db: str | None) -> None:
    from histetl.quality.build import write_run_page

    page, sidecar = write_run_page(html_path, report, observer, db)
    click.echo(f"report page: {page} (figures: {sidecar})")


@main.group()
def db() -> None:
    """Manage the target database."""


@db.command("init")
@_db_option
@click.option(
    "--chunk-interval",
    default="1 day",
    show_default=True,
    help="TimescaleDB chunk interval of new hypertables (PostgreSQL interval).",
)
@click.option(
    "--compress-after",
    metavar="INTERVAL",
    help="TimescaleDB: add a compression policy, e.g. '7 days'.",
)
@click.option(
    "--retain-for",
    metavar="INTERVAL",
    help="TimescaleDB: add a retention policy (drops older chunks), e.g. '2 years'.",
)
@_db_retry_options
@handle_errors
def db_init(
    db: str | None,
    chunk_interval: str,
    compress_after: str | None,
    retain_for: str | None,
    db_retries: int,
    db_retry_max_wait: float,
) -> None:
    """Apply migrations and create every canonical table (idempotent); on TimescaleDB also
    hypertables and the compression/retention policies given (refused, exit 2, on DuckDB
    or a PostgreSQL without TimescaleDB)."""
    for option, value in (
        ("--chunk-interval", chunk_interval),
        ("--compress-after", compress_after),
        ("--retain-for", retain_for),
    ):
        if value is not None and not re.fullmatch(r"\d+\s*[a-z]+", value.strip()):
            raise ConfigError(
                f"{value!r} is not an interval",
                where=option,
                hint="write it like '7 days' or '12 hours'",
            )
    context = click.get_current_context()
    given = tuple(
        f"--{name.replace('_', '-')}"
        for name in ("chunk_interval", "compress_after", "retain_for")
        if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    )
    options = TimescaleOptions(chunk_interval, compress_after, retain_for, given)
    shown = init_db(db or default_db(), options, RetryPolicy(db_retries, db_retry_max_wait))
    click.echo(f"database ready: {shown}")


@main.command()
@_db_option
@click.option("--limit", type=int, default=50, show_default=True, help="Newest N ledger rows.")
@_db_retry_options
@handle_errors
def status(db: str | None, limit: int, db_retries: int, db_retry_max_wait: float) -> None:
    """Show the load ledger: what was loaded when, from which files, with which counts."""
    retry = RetryPolicy(db_retries, db_retry_max_wait)
    entries = ledger(db or default_db(), retry)[-limit:]
    if not entries:
        click.echo("nothing loaded yet")
        return
    for e in entries:
        click.echo(
            f"{e.loaded_at:%Y-%m-%d %H:%M:%S}  {e.table:<12} records={e.records} "
            f"loaded={e.loaded} dup={e.duplicates} quar={e.quarantined}  "
            f"run={e.run_id}  {e.path}"
        )


@main.command()
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


@main.command()
@_db_option
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo"),
    show_default=True,
    help="Where the generated raw files and quarantine go.",
)
@handle_errors
def demo(db: str | None, directory: Path) -> None:
    """Generate sample Databento-style data (ES/NQ futures) and load it, end to end."""
    from histetl.demo import summary, write_demo_files  # generator: only when used

    uri = db or default_db()
    files = write_demo_files(directory / "raw")
    click.echo(f"generated {len(files)} DBN files under {directory / 'raw'}")
    replayer = Replayer(ReplayOptions(db=uri, quarantine_dir=directory / "quarantine"))
    observer = _observe(replayer)
    report = replayer.run(files, on_file=_print_file)
    click.echo(report.table())
    tables = [f.table for f in report.files if f.table and f.status != "failed"]
    if tables:
        click.echo("\nwhat was loaded:")
        click.echo(summary(uri, tables) + "\n")
    _write_page(directory / "report.html", report, observer, uri)
    if report.failed:
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--schema",
    type=click.Choice(SYNTH_SCHEMAS),
    required=True,
    help="DBN schema of the records to generate.",
)
@click.option(
    "--records",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="How many records (bars: at most one per instrument and interval).",
)
@click.option(
    "--symbols", default="ES.c.0", show_default=True, help="Comma-separated requested symbols."
)
@click.option(
    "--stype-in",
    type=click.Choice(["continuous", "raw_symbol", "parent"]),
    default="continuous",
    show_default=True,
    help="How the symbols were requested; decides the metadata's symbol mappings.",
)
@click.option(
    "--dataset",
    default="GLBX.MDP3",
    show_default=True,
    help="Dataset code written into the metadata (GLBX.MDP3, XNAS.ITCH, ...).",
)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    default="2023-12-14",
    show_default=True,
    help="First UTC day of the data.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Number of UTC days the records spread over.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed: the same seed gives the same bytes.",
)
@click.option(
    "--dbn-version",
    type=click.IntRange(1, 3),
    default=3,
    show_default=True,
    help="DBN version of the file.",
)
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    metavar="NAME=COUNT",
    help="Rows of an unusual but valid real-data shape (repeatable): no_last_trade, "
    "sideless_book_updates, book_clears.",
)
@click.option(
    "--no-symbology", is_flag=True, help="Write no symbology mappings (records have no symbol)."
)
@handle_errors
def synth(
    path: Path,
    schema: str,
    records: int,
    symbols: str,
    stype_in: str,
    dataset: str,
    start: dt.datetime,
    days: int,
    seed: int,
    dbn_version: int,
    shapes: tuple[str, ...],
    no_symbology: bool,
) -> None:
    """Write a realistic synthetic DBN file (.dbn, or zstd with .dbn.zst)."""
    from histetl.synth import Shapes, SynthSpec, write_dbn  # generator: only when used

    known = Shapes().counts()
    counts: dict[str, int] = {}
    for item in shapes:
        name, _, count = item.partition("=")
        if name not in known or not count.isdigit():
            raise ConfigError(
                f"--shape {item!r}: expected NAME=COUNT",
                where="histetl synth",
                hint=f"names: {', '.join(known)}",
            )
        counts[name] = int(count)
    spec = SynthSpec(
        schema=schema,
        records=records,
        dataset=dataset,
        symbols=tuple(s.strip() for s in symbols.split(",") if s.strip()),
        stype_in=stype_in,
        start=start.date(),
        days=days,
        seed=seed,
        version=dbn_version,
        shapes=Shapes(**counts),
        symbology=not no_symbology,
    )
    check_output(path, str(path))
    try:
        result = write_dbn(spec, path)
    except ValueError as exc:
        raise ConfigError(str(exc), where="histetl synth") from exc
    except OSError as exc:
        raise OutputError(
            f"cannot write {path}: {exc.strerror or exc}", where="histetl synth"
        ) from None
    click.echo(f"wrote {result.records} {schema} records to {result.path}")


# -- histetl run / histetl jobs: fetch from the Databento Historical API (histetl.fetch) -------


def _print_chunk(item: Any) -> None:
    chunk = item.chunk
    if item.status == "failed":
        logger.error("{} failed: {}", chunk.relpath, item.error)
        return
    cost = f"${item.cost_usd:,.4f}" if item.cost_usd is not None else "$?"
    logger.info(
        "downloaded {}: {} records, {} ({:.2f}s)", chunk.relpath, item.records, cost, item.seconds
    )


@main.command("run")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--job", "job_names", multiple=True, metavar="NAME", help="Run only this job; repeatable."
)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan (chunks, records, cost); download nothing."
)
@click.option("--force", is_flag=True, help="Fetch complete chunks again and reload them.")
@click.option(
    "--db",
    default=None,
    metavar="URI",
    help=f"Target database (default: ${DB_ENV_VAR}, else the job file's `db`, else "
    "duckdb:///./histetl.duckdb).",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run report (chunks and files) as JSON to this file.",
)
@click.option(
    "--fail-on-quarantine",
    is_flag=True,
    help="Exit 3 when any row was quarantined (for cron alerts).",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="If another run of the same job is busy, wait this long for it, then give up "
    "(exit 0); default: give up at once.",
)
@_cluster_options
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a data-quality report page (and FILE's .figures.json sidecar).",
)
@handle_errors
def run_command(
    job_file: Path,
    job_names: tuple[str, ...],
    dry_run: bool,
    force: bool,
    db: str | None,
    report_path: Path | None,
    fail_on_quarantine: bool,
    wait_s: float,
    cluster: str | None,
    max_db_writers: int,
    html_path: Path | None,
) -> None:
    """Fetch JOB_FILE's jobs from the Databento Historical API into raw_dir, then load them.

    Complete chunks are never fetched again and files already loaded are skipped, so a rerun
    (after a crash, or from cron) only does what is missing.
    """
    from histetl.fetch import LockBusyError, RunOptions, format_plans, run_jobs
    from histetl.jobs import load_job_file

    jobs = load_job_file(job_file)
    if report_path is not None:
        check_output(report_path, "--report")
    options = RunOptions(
        jobs=job_names,
        dry_run=dry_run,
        force=force,
        db=db,
        lock_wait_s=wait_s,
        cluster=cluster or None,
        max_db_writers=max_db_writers,
    )
    if html_path is not None and not dry_run:
        from histetl.quality.figures import ReportObserver
        from histetl.validate import RuleBook

        options.observer = ReportObserver(RuleBook.load(jobs.rules))
    try:
        with stop_on_signals():  # SIGINT/SIGTERM: stop cleanly, exit 130/143
            result = run_jobs(jobs, options, on_chunk=_print_chunk, on_file=_print_file)
    except LockBusyError as exc:
        click.echo(f"skipped: {exc.message}", err=True)
        return
    if result.report is None:  # dry run
        click.echo(format_plans(result.plans, show_files=True))
        if any(p.over_budget for p in result.plans):
            sys.exit(EXIT_FAILED)
        return
    if report_path is not None:
        write_json(report_path, result.to_dict())
        click.echo(f"report: {report_path}")
    if html_path is not None and options.observer is not None:
        _write_page(html_path, result.report, options.observer, jobs.target_db(db))
    if result.error is not None:
        click.echo(result.report.table())
        click.echo(f"error: {result.error.message}", err=True)
        sys.exit(EXIT_FAILED)
    _finish(result.report, None, fail_on_quarantine)


@main.command("report")
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
    from histetl.quality.build import from_report_file, write

    page, sidecar = write(html_path, from_report_file(report_file, db))
    click.echo(f"report page: {page} (figures: {sidecar})")


@main.command("jobs")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--job", "job_names", multiple=True, metavar="NAME", help="Show only this job; repeatable."
)
@handle_errors
def jobs_command(job_file: Path, job_names: tuple[str, ...]) -> None:
    """List JOB_FILE's jobs and the status of their chunks under raw_dir (no network)."""
    from histetl.fetch import format_plans, local_plans
    from histetl.jobs import load_job_file

    jobs = load_job_file(job_file)
    click.echo(format_plans(local_plans(jobs.select(job_names), jobs.raw_dir), show_files=True))


# -- histetl query / verify / resample: read back, check, derive bars ---------------------------


@main.command("query")
@_db_option
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
    from histetl.query import QueryOptions, export, split_list

    options = QueryOptions(
        db=db or default_db(),
        schema=schema,
        symbols=split_list(symbols),
        start=start,
        end=end,
        columns=split_list(columns),
        limit=limit,
    )
    if output is not None:
        check_output(output, "-o")
    stdout = sys.stdout.buffer if output is None else None
    result = export(options, fmt, stdout, output)
    if result.reader_gone:  # `histetl query ... | head`: stop quietly, like other tools
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    if result.rows == 0:
        click.echo(f"no rows for {result.description}", err=True)
    elif output is not None:
        click.echo(f"wrote {result.rows} rows to {output}", err=True)


@main.command("verify")
@_db_option
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
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the results as JSON to this file.",
)
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
    from histetl.verify import CHECKS, VerifyOptions, verify

    options = VerifyOptions(
        db=db or default_db(),
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


@main.command("resample")
@_db_option
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
    from histetl.resample import ResampleOptions, check_options, resample

    if table and len(intervals) > 1:
        raise ConfigError("--table needs a single --interval", where="--table")
    uri = db or default_db()
    runs = [ResampleOptions(uri, interval, source, start, end, table) for interval in intervals]
    for options in runs:  # every interval checked before any work
        check_options(options)
    for options in runs:
        click.echo(resample(options).summary())


if __name__ == "__main__":  # pragma: no cover
    main()
