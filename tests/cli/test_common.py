"""histetl.cli.common: a library error becomes one line and its exit code; the group's log
options take effect when a command runs (not on its --help); finish() prints the run, writes
its report and picks the exit code; the target default; one log line per file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from loguru import logger

import histetl.logs
from histetl.cli import main
from histetl.cli.common import (
    db_option,
    fail_on_quarantine_option,
    finish,
    handle_errors,
    print_file,
    report_option,
    target,
)
from histetl.errors import ConfigError, LoadError
from histetl.logs import logger_level
from histetl.report import FileReport, RunReport


def loaded(name: str, quarantined: int = 0) -> FileReport:
    return FileReport(
        f"/raw/{name}",
        schema="trades",
        table="trades",
        records=10 + quarantined,
        loaded=10,
        quarantined=quarantined,
        quarantine_file=f"quarantine/{name}.parquet" if quarantined else None,
        status="loaded",
        seconds=0.5,
    )


def failed(name: str) -> FileReport:
    return FileReport(f"/raw/{name}", status="failed", error="truncated")


def command(report: RunReport) -> click.Command:
    @click.command()
    @report_option("the report")
    @fail_on_quarantine_option
    @handle_errors
    def finishing(report_path: Path | None, fail_on_quarantine: bool) -> None:
        finish(report, report_path, fail_on_quarantine)

    return finishing


def test_a_histetl_error_is_one_line_on_stderr_and_its_exit_code() -> None:
    @click.command()
    @click.argument("kind")
    @handle_errors
    def failing(kind: str) -> None:
        if kind == "config":
            raise ConfigError("bad value", where="--x", hint="give a number")
        if kind == "load":
            raise LoadError("connection lost")
        raise RuntimeError("a bug")

    runner = CliRunner()
    config = runner.invoke(failing, ["config"])
    assert (config.exit_code, config.stdout) == (2, "")
    assert config.stderr == "error: --x: bad value\n  hint: give a number\n"
    load = runner.invoke(failing, ["load"])
    assert (load.exit_code, load.stderr) == (1, "error: connection lost\n")
    bug = runner.invoke(failing, ["bug"])  # anything else is a bug: not swallowed
    assert isinstance(bug.exception, RuntimeError)


def test_finish_prints_the_table_writes_the_report_and_exits_0(tmp_path: Path) -> None:
    report = RunReport("run-1", "duckdb:///h.duckdb", files=[loaded("a.dbn"), loaded("b.dbn", 2)])
    path = tmp_path / "r.json"

    result = CliRunner().invoke(command(report), ["--report", str(path)])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(report.table() + "\n")
    assert f"report: {path}\n" in result.stdout
    assert result.stdout.endswith("quarantined 2 rows of b.dbn: quarantine/b.dbn.parquet\n")
    assert json.loads(path.read_text())["totals"]["quarantined"] == 2


def test_finish_exits_3_on_quarantined_rows_only_when_asked() -> None:
    report = RunReport("run-1", "duckdb:///h.duckdb", files=[loaded("b.dbn", 2)])
    assert CliRunner().invoke(command(report), ["--fail-on-quarantine"]).exit_code == 3
    clean = RunReport("run-1", "duckdb:///h.duckdb", files=[loaded("a.dbn")])
    assert CliRunner().invoke(command(clean), ["--fail-on-quarantine"]).exit_code == 0


def test_finish_exits_1_when_a_file_failed_before_the_quarantine_code() -> None:
    report = RunReport("run-1", "duckdb:///h.duckdb", files=[failed("x.dbn"), loaded("b.dbn", 2)])
    result = CliRunner().invoke(command(report), ["--fail-on-quarantine"])
    assert result.exit_code == 1
    assert result.stderr == "1 file(s) failed; see the messages above\n"


@pytest.fixture
def _log_sinks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The CLI's log file under tmp_path/logs; the level and loguru's sinks reset after."""
    monkeypatch.setenv("HISTETL_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(histetl.logs, "_level", histetl.logs._level)
    yield tmp_path / "logs"
    logger.remove()


@pytest.mark.usefixtures("_log_sinks")
def test_the_group_log_options_are_applied_when_the_command_runs_not_on_its_help(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "no-quarantine"
    empty.mkdir()
    runner = CliRunner()

    helped = runner.invoke(main, ["-v", "quarantine", "--help"])
    assert helped.exit_code == 0, helped.output
    assert (logger_level(), (tmp_path / "logs").exists()) == (20, False)

    ran = runner.invoke(main, ["-v", "quarantine", str(empty)])
    assert ran.exit_code == 0, ran.output
    assert logger_level() == 10
    assert (tmp_path / "logs" / "histetl.log").exists()
    ran = runner.invoke(main, ["-q", "quarantine", str(empty)])
    assert logger_level() == 30


def test_target_is_the_option_else_histetl_db_else_the_local_duckdb_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HISTETL_DB", raising=False)
    assert target(None) == "duckdb:///./histetl.duckdb"
    monkeypatch.setenv("HISTETL_DB", "postgresql://u@h/db")
    assert target(None) == "postgresql://u@h/db"
    assert target("duckdb:///x.duckdb") == "duckdb:///x.duckdb"

    @click.command()
    @db_option
    def show(db: str | None) -> None:
        click.echo(target(db))

    assert CliRunner().invoke(show, []).stdout == "postgresql://u@h/db\n"
    assert CliRunner().invoke(show, ["--db", "duckdb:///y"]).stdout == "duckdb:///y\n"


def test_print_file_logs_one_line_per_file_at_the_level_of_its_outcome() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"))
    try:
        print_file(loaded("b.dbn", 2))
        print_file(failed("x.dbn"))
        print_file(FileReport("/raw/c.dbn", skipped=40, status="skipped"))
    finally:
        logger.remove(sink)
    assert lines == [
        "INFO /raw/b.dbn: 12 records, 10 loaded, 0 duplicates, 2 quarantined (0.50s)",
        "ERROR /raw/x.dbn failed: truncated",
        "INFO /raw/c.dbn: already loaded (40 records), skipped",
    ]
