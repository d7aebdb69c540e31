"""Commands that load: replay, run (fetch, then replay), jobs, demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from histetl.cli.common import (
    cluster_options,
    db_option,
    db_retry_options,
    db_timeout_options,
    fail_on_quarantine_option,
    finish,
    handle_errors,
    html_option,
    observe,
    print_file,
    report_option,
    target,
    write_page,
)
from histetl.config import DB_ENV_VAR, DEFAULT_BATCH_SIZE
from histetl.errors import EXIT_FAILED

if TYPE_CHECKING:
    from histetl.options import ReplayOptions
    from histetl.report import RunReport

# The commands import what they run when they run: `histetl COMMAND --help` loads no stage,
# no loguru and no options, report, outputs or signal module.


@click.command()
@click.argument("paths", nargs=-1, required=True)
@db_option
@report_option("Write the run report as JSON to this file.")
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
@fail_on_quarantine_option
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Load files in parallel with this many processes (PostgreSQL targets).",
)
@cluster_options
@db_retry_options
@click.option(
    "--batch-size",
    type=int,
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Records per batch, 1 to 10,000,000; memory follows this, not the file size.",
)
@html_option
@db_timeout_options
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
    from histetl.options import ReplayOptions
    from histetl.outputs import check_outputs
    from histetl.targets import RetryPolicy

    options = ReplayOptions(
        db=target(db),
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
    check_outputs([("--report", report_path), ("--html", html_path)])
    if html_path is None:
        skipped = _skipped_run(options, paths)  # a rerun that finds nothing new: no stage loads
        if skipped is not None:
            for file_report in skipped.files:
                print_file(file_report)
            finish(skipped, report_path, fail_on_quarantine)
            return
    from histetl.cli.progress import Progress
    from histetl.interrupt import stop_on_signals
    from histetl.pipeline.replay import Replayer
    from histetl.source.files import expand_paths

    replayer = Replayer(options)
    files = expand_paths(paths)
    observer = observe(replayer) if html_path is not None else None
    # SIGINT/SIGTERM: the file in progress is rolled back, no other starts, exit 130/143
    with stop_on_signals(), Progress() as progress:
        replayer.on_progress = progress.update
        on_file = progress.wrap(print_file)
        if options.cluster is not None:
            on_file = progress.count(len(files), on_file)
        report = replayer.run(files, on_file=on_file)
    if html_path is not None and observer is not None:
        write_page(html_path, report, observer, None if validate_only else options.db)
    finish(report, report_path, fail_on_quarantine)


def _skipped_run(options: ReplayOptions, patterns: tuple[str, ...]) -> RunReport | None:
    """The ledger pre-check (histetl.precheck), stoppable by SIGINT/SIGTERM at once."""
    from histetl.interrupt import CANCEL, Interrupted, stop_on_signals
    from histetl.precheck import skipped_run

    try:
        with stop_on_signals(), CANCEL.raising():
            return skipped_run(options, patterns)
    except Interrupted as exc:
        raise Interrupted(exc.signum, "nothing loaded (checking the ledger)") from None


@click.command()
@db_option
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
    from histetl.options import ReplayOptions
    from histetl.pipeline.replay import Replayer

    uri = target(db)
    files = write_demo_files(directory / "raw")
    click.echo(f"generated {len(files)} DBN files under {directory / 'raw'}")
    replayer = Replayer(ReplayOptions(db=uri, quarantine_dir=directory / "quarantine"))
    observer = observe(replayer)
    report = replayer.run(files, on_file=print_file)
    click.echo(report.table())
    tables = [f.table for f in report.files if f.table and f.status != "failed"]
    if tables:
        click.echo("\nwhat was loaded:")
        click.echo(summary(uri, tables) + "\n")
    write_page(directory / "report.html", report, observer, uri)
    if report.failed:
        sys.exit(EXIT_FAILED)


def _print_chunk(item: Any) -> None:
    from loguru import logger

    chunk = item.chunk
    if item.status == "failed":
        logger.error("{} failed: {}", chunk.relpath, item.error)
        return
    cost = f"${item.cost_usd:,.4f}" if item.cost_usd is not None else "$?"
    logger.info(
        "downloaded {}: {} records, {} ({:.2f}s)", chunk.relpath, item.records, cost, item.seconds
    )


@click.command("run")
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
@report_option("Write the run report (chunks and files) as JSON to this file.")
@fail_on_quarantine_option
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="If another run of the same job is busy, wait this long for it, then give up "
    "(exit 0); default: give up at once.",
)
@cluster_options
@html_option
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
    from histetl.interrupt import stop_on_signals
    from histetl.jobs import load_job_file
    from histetl.outputs import check_outputs, write_json
    from histetl.pipeline.run import RunOptions, run_jobs
    from histetl.source.databento.lock import LockBusyError
    from histetl.source.databento.plan import format_plans

    jobs = load_job_file(job_file)
    check_outputs([("--report", report_path), ("--html", html_path)], [("JOB_FILE", job_file)])
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
        from histetl.quality.observer import ReportObserver
        from histetl.validate import RuleBook

        options.observer = ReportObserver(RuleBook.load(jobs.rules))
    try:
        with stop_on_signals():  # SIGINT/SIGTERM: stop cleanly, exit 130/143
            result = run_jobs(jobs, options, on_chunk=_print_chunk, on_file=print_file)
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
        write_page(html_path, result.report, options.observer, jobs.target_db(db))
    if result.error is not None:
        click.echo(result.report.table())
        click.echo(f"error: {result.error.message}", err=True)
        sys.exit(EXIT_FAILED)
    finish(result.report, None, fail_on_quarantine)


@click.command("jobs")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--job", "job_names", multiple=True, metavar="NAME", help="Show only this job; repeatable."
)
@handle_errors
def jobs_command(job_file: Path, job_names: tuple[str, ...]) -> None:
    """List JOB_FILE's jobs and the status of their chunks under raw_dir (no API request)."""
    from histetl.jobs import load_job_file
    from histetl.source.databento.plan import format_plans, local_plans

    jobs = load_job_file(job_file)
    click.echo(format_plans(local_plans(jobs.select(job_names), jobs.raw_dir), show_files=True))
