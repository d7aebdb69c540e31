"""Commands on a Delta Lake target: lake optimize, lake vacuum."""

from __future__ import annotations

import click

from histetl.cli.common import db_option, handle_errors, target

_NO_TABLES = "no tables in the lake yet: nothing to do"
_tables_option = click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="NAME",
    help="Only this table (repeatable; default: every table of the lake).",
)


@click.group()
def lake() -> None:
    """Maintain a Delta Lake target (delta:///... or delta+s3://...)."""


@lake.command("optimize")
@db_option
@_tables_option
@click.option(
    "--zorder",
    metavar="COLUMN,...",
    help="Also Z-order the rewritten files by these columns (e.g. instrument_id,ts_event_ns).",
)
@click.option(
    "--target-size",
    "target_size_mb",
    type=click.IntRange(min=1),
    metavar="MB",
    help="Approximate size of the compacted files (default: delta.targetFileSize or 100 MB).",
)
@handle_errors
def optimize_command(
    db: str | None, tables: tuple[str, ...], zorder: str | None, target_size_mb: int | None
) -> None:
    """Compact each table's small data files into larger ones (a new table version: the
    data, the ledger and what is already loaded stay as they are)."""
    from histetl.targets import need_deltalake

    uri = target(db)
    need_deltalake()
    from histetl.targets.delta.lake import optimize

    columns = [c.strip() for c in zorder.split(",") if c.strip()] if zorder else []
    results = optimize(uri, tables, columns, target_size_mb)
    for result in results:
        click.echo(result.line())
    if not results:
        click.echo(_NO_TABLES)


@lake.command("vacuum")
@db_option
@_tables_option
@click.option(
    "--retention-hours",
    type=click.IntRange(min=0),
    metavar="HOURS",
    help="Delete files unneeded for this long (default: the table's retention, "
    "delta.deletedFileRetentionDuration, 7 days unless set).",
)
@click.option(
    "--break-time-travel",
    is_flag=True,
    help="Allow a --retention-hours below the table's retention: versions older than it "
    "can no longer be read.",
)
@click.option(
    "--apply", "--yes", "apply", is_flag=True, help="Delete the files (default: only list them)."
)
@handle_errors
def vacuum_command(
    db: str | None,
    tables: tuple[str, ...],
    retention_hours: int | None,
    break_time_travel: bool,
    apply: bool,
) -> None:
    """Delete data files that no table version within the retention needs (files replaced
    by optimize, left by killed runs). A dry run unless --apply."""
    from histetl.targets import need_deltalake

    uri = target(db)
    need_deltalake()
    from histetl.targets.delta.lake import vacuum

    results = vacuum(uri, tables, retention_hours, apply, break_time_travel)
    for result in results:
        click.echo(result.line())
    if not results:
        click.echo(_NO_TABLES)
    if not apply and any(r.files for r in results):
        click.echo("dry run: add --apply to delete them")
