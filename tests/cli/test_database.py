"""histetl.cli.database: `histetl db init` and `histetl status`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from histetl.cli import main
from tests.cli.conftest import HISTETL


def test_status_shows_the_ledger(
    trades_dbn: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["status"]).output.strip() == "nothing loaded yet"
    assert runner.invoke(main, ["replay", str(trades_dbn)]).exit_code == 0
    status = runner.invoke(main, ["status"])
    assert "trades" in status.output
    assert "loaded=298" in status.output


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
