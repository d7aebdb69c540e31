"""What the commands share: the error-to-exit mapping, option decorators, and printing a run.

Imports here stay light (click and histetl's own small modules): `histetl --help` loads no
stage, no loguru (asyncio) and no options, report or cluster module: the option defaults come
from `histetl.config`, where `RetryPolicy` and `ReplayOptions` take theirs.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from histetl.config import (
    CLUSTER_ENV,
    DB_ENV_VAR,
    DB_RETRIES,
    DB_RETRY_MAX_WAIT_S,
    DB_TIMEOUT_S,
    LOCK_TIMEOUT_S,
    MAX_DB_WRITERS,
    default_db,
)
from histetl.errors import EXIT_FAILED, EXIT_QUARANTINED, EXIT_SIGINT, HistetlError
from histetl.textable import printable

if TYPE_CHECKING:
    from histetl.pipeline.replay import Replayer
    from histetl.report import FileReport, RunReport

F = TypeVar("F", bound=Callable[..., Any])


LOGGING = "histetl.logging"  # the group's -v/-q/--log-json, in the click context's meta


def configure_logging() -> None:
    """Set up the log sinks the group's options asked for (loguru loads here, when a command
    runs: a command's --help stops before). Nothing when the command runs without the group."""
    context = click.get_current_context(silent=True)
    settings = context.meta.get(LOGGING) if context is not None else None
    if settings is not None:
        from histetl.logs import configure

        configure(**settings)


def handle_errors(func: F) -> F:
    """Configure logging, then run the command, turning library errors into a message on
    stderr and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        configure_logging()
        try:
            return func(*args, **kwargs)
        except HistetlError as exc:
            click.echo(f"error: {printable(exc.message)}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # Ctrl-C in a command without a stop of its own (query, ...)
            click.echo("error: interrupted by SIGINT", err=True)
            sys.exit(EXIT_SIGINT)

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
    """--db-retries and --db-retry-max-wait (RetryPolicy's defaults, from histetl.config)."""
    func = click.option(
        "--db-retry-max-wait",
        type=click.FloatRange(min=0),
        default=DB_RETRY_MAX_WAIT_S,
        show_default=True,
        help="Longest backoff between attempts, in seconds.",
    )(func)
    return click.option(
        "--db-retries",
        type=click.IntRange(min=1),
        default=DB_RETRIES,
        show_default=True,
        help="Attempts when the database is unreachable or drops the connection.",
    )(func)


def db_timeout_options(func: F) -> F:
    """--db-timeout and --lock-timeout (RetryPolicy's defaults, from histetl.config;
    `connect_timeout` is a URI parameter, default 10 s)."""
    func = click.option(
        "--lock-timeout",
        type=click.FloatRange(min=0),
        default=LOCK_TIMEOUT_S,
        show_default=True,
        metavar="SECONDS",
        help="Longest wait for another loader's lock (PostgreSQL day/table locks, the DuckDB "
        "file); then the file fails. 0 waits forever.",
    )(func)
    return click.option(
        "--db-timeout",
        type=click.FloatRange(min=0),
        default=DB_TIMEOUT_S,
        show_default=True,
        metavar="SECONDS",
        help="Longest the PostgreSQL server may stay silent on a statement (no answer, no "
        "progress) before the connection is dropped and retried; a lock wait goes on while the "
        "server answers new connections. 0 disables.",
    )(func)


def cluster_options(func: F) -> F:
    func = click.option(
        "--max-db-writers",
        type=click.IntRange(min=1),
        default=MAX_DB_WRITERS,
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
    from loguru import logger

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
        shown = printable(f"{Path(f.path).name}: {f.quarantine_file}")
        click.echo(f"quarantined {f.quarantined} rows of {shown}")
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
