"""histetl.cli.database: `histetl db init` and `histetl status`."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import psycopg
import pytest
from click.testing import CliRunner

from histetl.cli import main
from histetl.synth import SynthSpec, write_dbn
from tests.cli.conftest import HISTETL
from tests.support.pgserver import PgServer, fresh_schema


def test_status_shows_the_ledger(
    trades_dbn: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["status"]).output.strip() == (
        "nothing loaded yet into duckdb:///./histetl.duckdb"
    )
    assert not (tmp_path / "histetl.duckdb").exists()  # asking creates nothing
    assert runner.invoke(main, ["replay", str(trades_dbn)]).exit_code == 0
    status = runner.invoke(main, ["status"])
    assert "trades" in status.output
    assert "loaded=298" in status.output


def test_status_of_a_lake_not_made_yet_says_so_and_creates_nothing(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    result = CliRunner().invoke(main, ["status", "--db", f"delta:///{lake}"])
    assert result.exit_code == 0, result.output
    assert result.output == f"nothing loaded yet into delta:///{lake}\n"
    assert not lake.exists()


@pytest.mark.parametrize("command", [["status"], ["db", "init"]], ids=["status", "db-init"])
def test_command_with_db_retries_when_host_is_wrong_tries_that_often_then_fails_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    wrong = ["--db", "postgresql://postgres@127.0.0.1:1/postgres"]
    once = subprocess.run(
        [*HISTETL, *command, *wrong, "--db-retries", "1"],
        capture_output=True, text=True, cwd=tmp_path, check=False, timeout=60,
    )  # fmt: skip
    assert once.returncode == 1, once.stderr
    assert "attempt" not in once.stderr, once.stderr
    assert once.stderr.startswith("error: PostgreSQL at 127.0.0.1:1"), once.stderr
    twice = subprocess.run(
        [*HISTETL, *command, *wrong, "--db-retries", "2", "--db-retry-max-wait", "0"],
        capture_output=True, text=True, cwd=tmp_path, check=False, timeout=60,
    )  # fmt: skip
    assert twice.returncode == 1, twice.stderr
    assert "(attempt 1 of 2), retrying" in twice.stderr, twice.stderr
    assert "attempt 2" not in twice.stderr, twice.stderr
    assert "Traceback" not in once.stderr + twice.stderr


def test_db_init_creates_the_ledger_and_every_canonical_table_idempotently(tmp_path: Path) -> None:
    db = tmp_path / "h.duckdb"
    for _ in range(2):
        result = CliRunner().invoke(main, ["db", "init", "--db", f"duckdb:///{db}"])
        assert result.exit_code == 0, result.output
        assert result.output == f"database ready: duckdb:///{db}\n"
    with duckdb.connect(str(db), read_only=True) as con:
        tables = {
            name
            for (name,) in con.sql("SELECT table_name FROM information_schema.tables").fetchall()
        }
    assert {"histetl_ledger", "trades", "mbo", "ohlcv_1m", "definition", "status"} <= tables
    assert len(tables) == 21


@pytest.mark.parametrize("option", ["--chunk-interval", "--compress-after", "--retain-for"])
def test_db_init_when_an_interval_is_malformed_exits_2_before_touching_the_database(
    option: str, tmp_path: Path
) -> None:
    db = tmp_path / "h.duckdb"
    result = CliRunner().invoke(main, ["db", "init", "--db", f"duckdb:///{db}", option, "forever"])
    assert result.exit_code == 2
    assert result.output == (
        f"error: {option}: 'forever' is not an interval\n"
        "  hint: write it like '7 days' or '12 hours'\n"
    )
    assert not db.exists()


def test_db_init_with_timescale_options_on_duckdb_is_refused_naming_them(tmp_path: Path) -> None:
    db = f"duckdb:///{tmp_path / 'h.duckdb'}"
    result = CliRunner().invoke(main, ["db", "init", "--db", db, "--retain-for", "2 years"])
    assert result.exit_code == 2
    assert result.output.startswith(
        f"error: --retain-for: --retain-for need TimescaleDB, but {db} is a DuckDB database"
    )


def test_status_limit_shows_the_newest_ledger_rows_one_a_line(
    trades_dbn: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    other = tmp_path / "other.dbn"
    write_dbn(SynthSpec(schema="trades", records=10, seed=4), other)
    assert runner.invoke(main, ["replay", str(trades_dbn)]).exit_code == 0
    assert runner.invoke(main, ["replay", str(other)]).exit_code == 0

    lines = runner.invoke(main, ["status"]).output.splitlines()
    newest = runner.invoke(main, ["status", "--limit", "1"]).output.splitlines()

    assert len(lines) == 2
    assert newest == lines[-1:]
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  trades       records=10 loaded=10 dup=0 quar=0  "
        rf"run=\S+  {re.escape(str(other.resolve()))}",
        newest[0],
    ), newest[0]


def test_status_as_a_read_only_role_shows_the_ledger(
    trades_dbn: Path, tmp_path: Path, pg_server: PgServer
) -> None:
    """An analyst's role may read, not create: `status` reads the ledger as `query` does
    (it used to migrate first and fail with "permission denied for schema")."""
    role = f"ro_{uuid.uuid4().hex[:8]}"
    with fresh_schema(pg_server.uri) as (uri, schema):
        loaded = subprocess.run(
            [*HISTETL, "replay", str(trades_dbn), "--db", uri],
            capture_output=True, text=True, cwd=tmp_path, check=False,
        )  # fmt: skip
        assert loaded.returncode == 0, loaded.stderr
        with psycopg.connect(pg_server.uri, autocommit=True) as admin:
            admin.execute(f"CREATE ROLE {role} LOGIN")
            admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
            admin.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {role}')
        try:
            as_reader = uri.replace(f"//{urlsplit(uri).username}@", f"//{role}@", 1)
            status = subprocess.run(
                [*HISTETL, "status", "--db", as_reader],
                capture_output=True, text=True, cwd=tmp_path, check=False,
            )  # fmt: skip
        finally:
            with psycopg.connect(pg_server.uri, autocommit=True) as admin:
                admin.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{schema}" FROM {role}')
                admin.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM {role}')
                admin.execute(f"DROP ROLE {role}")
    assert status.returncode == 0, status.stderr
    assert "  trades       records=301 loaded=298 dup=1 quar=2  run=" in status.stdout
