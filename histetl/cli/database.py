"""Commands on the target database: db init, status."""

from __future__ import annotations

import re

import click

from histetl.cli.common import db_option, db_retry_options, handle_errors, target
from histetl.errors import ConfigError


@click.group()
def db() -> None:
    """Manage the target database."""


@db.command("init")
@db_option
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
@db_retry_options
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
    from histetl.pipeline.replay import init_db
    from histetl.targets import RetryPolicy, TimescaleOptions

    options = TimescaleOptions(chunk_interval, compress_after, retain_for, given)
    shown = init_db(target(db), options, RetryPolicy(db_retries, db_retry_max_wait))
    click.echo(f"database ready: {shown}")


@click.command()
@db_option
@click.option("--limit", type=int, default=50, show_default=True, help="Newest N ledger rows.")
@db_retry_options
@handle_errors
def status(db: str | None, limit: int, db_retries: int, db_retry_max_wait: float) -> None:
    """Show the load ledger: what was loaded when, from which files, with which counts."""
    from histetl.targets import RetryPolicy, display, read_ledger
    from histetl.textable import printable

    retry = RetryPolicy(db_retries, db_retry_max_wait)
    uri = target(db)
    entries = read_ledger(uri, retry)[-limit:]
    if not entries:
        click.echo(f"nothing loaded yet into {display(uri)}")
        return
    for e in entries:
        click.echo(
            f"{e.loaded_at:%Y-%m-%d %H:%M:%S}  {e.table:<12} records={e.records} "
            f"loaded={e.loaded} dup={e.duplicates} quar={e.quarantined}  "
            f"run={e.run_id}  {printable(e.path)}"
        )
