"""What the commands share: the error-to-exit mapping, option decorators, and printing a run.

Imports here stay light (click, loguru and histetl's own small modules): `histetl --help`
loads no stage.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from loguru import logger

from histetl.config import DB_ENV_VAR, default_db
from histetl.errors import EXIT_FAILED, EXIT_QUARANTINED, HistetlError
from histetl.options import ReplayOptions
from histetl.pipeline.cluster import CLUSTER_ENV
from histetl.report import FileReport, RunReport
from histetl.targets import RetryPolicy

if TYPE_CHECKING:
    from histetl.pipeline.replay import Replayer

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


def db_option(func: F) -> F:
    return click.option(
        "--db",
        default=None,
        metavar="URI",
        help=f"Target: duckdb:///path.duckdb, postgresql://user@host/db or delta:///lake "
        f"(default: ${DB_ENV_VAR}, else duckdb:///./histetl.duckdb).",
    )(func)


def db_retry_options(func: F) -> F:
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


def db_timeout_options(func: F) -> F:
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


def cluster_options(func: F) -> F:
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


def report_option(help: str) -> Callable[[F], F]:
    """--report FILE (a JSON report of the command); checked before any work by the command."""
    return click.option(
        "--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help=help
    )


def html_option(func: F) -> F:
    """--html FILE: the data-quality page of a loading run."""
    return click.option(
        "--html",
        "html_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also write a data-quality report page (and FILE's .figures.json sidecar).",
    )(func)


def fail_on_quarantine_option(func: F) -> F:
    return click.option(
        "--fail-on-quarantine",
        is_flag=True,
        help="Exit 3 when any row was quarantined (for cron alerts).",
    )(func)


def print_file(report: FileReport) -> None:
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


def finish(report: RunReport, report_path: Path | None, fail_on_quarantine: bool) -> None:
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


def observe(replayer: Replayer) -> Any:
    from histetl.quality.build import observe as observe_batches  # only when asked for

    return observe_batches(replayer)


def write_page(html_path: Path, report: RunReport, observer: Any, db: str | None) -> None:
    from histetl.quality.build import write_run_page

    page, sidecar = write_run_page(html_path, report, observer, db)
    click.echo(f"report page: {page} (figures: {sidecar})")


def target(db: str | None) -> str:
    """--db, else $HISTETL_DB, else ./histetl.duckdb."""
    return db or default_db()
