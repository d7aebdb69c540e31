"""The command line as a cron job or a person meets it: exit codes, messages, the report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from histetl.cli import main
from histetl.jobs import JobFile, JobSpec
from histetl.synth import Defects, SynthSpec, write_dbn

ROOT = Path(__file__).resolve().parents[2]
HISTETL = [sys.executable, "-m", "histetl.cli"]


def commands() -> list[tuple[str, click.Command]]:
    found = []
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            found.extend((f"{name} {sub}", cmd) for sub, cmd in command.commands.items())
        found.append((name, command))
    return found


@pytest.mark.parametrize(("name", "command"), commands(), ids=lambda c: str(c))
def test_every_command_has_help_text_and_a_readme_section(
    name: str, command: click.Command
) -> None:
    assert command.help, name
    assert len(command.help.strip()) > 20, name
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts[0]} has no help"
    readme = (ROOT / "README.md").read_text()
    top = name.split()[0]
    assert re.search(rf"^### `histetl {re.escape(top)}`", readme, re.MULTILINE), (
        f"README.md has no '### `histetl {top}`' section"
    )


@pytest.fixture
def trades(tmp_path: Path) -> Path:
    path = tmp_path / "trades.dbn.zst"
    write_dbn(
        SynthSpec(
            schema="trades", records=300, seed=3, defects=Defects(zero_size=2, exact_duplicates=1)
        ),
        path,
    )
    return path


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [*HISTETL, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_replay_writes_a_reconciled_report_and_no_progress_redraws(
    trades: Path, tmp_path: Path
) -> None:
    result = run("replay", str(trades), "--report", "r.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr + result.stdout  # not a terminal: no redraws
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report) >= {"run_id", "files", "totals"}
    file = report["files"][0]
    assert set(file) >= {
        "path",
        "dataset",
        "schema",
        "table",
        "records",
        "loaded",
        "duplicates",
        "quarantined",
        "skipped",
        "rules",
        "quarantine_file",
    }
    assert (file["records"], file["loaded"], file["duplicates"], file["quarantined"]) == (
        301,
        298,
        1,
        2,
    )
    assert file["rules"] == {"size_positive": 2}
    assert Path(tmp_path, file["quarantine_file"]).is_file()
    assert report["totals"]["records"] == 301
    assert (tmp_path / "histetl.duckdb").is_file()  # the documented default target


def test_replay_exit_codes(trades: Path, tmp_path: Path) -> None:
    assert run("replay", str(trades), "--fail-on-quarantine", cwd=tmp_path).returncode == 3
    missing = run("replay", "nope/*.dbn", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no DBN files match 'nope/*.dbn'" in missing.stderr
    broken = tmp_path / "broken.dbn"
    broken.write_bytes(b"DBN\x03" + b"\x00" * 10)
    failed = run("replay", str(broken), cwd=tmp_path)
    assert failed.returncode == 1
    assert "broken.dbn" in failed.stderr
    bad_db = run("replay", str(trades), "--db", "mysql://x", cwd=tmp_path)
    assert bad_db.returncode == 2
    assert "unsupported database URI scheme 'mysql'" in bad_db.stderr
    for result in (missing, failed, bad_db):
        assert "Traceback" not in result.stderr


def test_histetl_db_env_sets_the_default_target(trades: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.duckdb"
    result = run("replay", str(trades), cwd=tmp_path, env={"HISTETL_DB": f"duckdb:///{target}"})
    assert result.returncode == 0, result.stderr
    assert target.is_file()
    assert not (tmp_path / "histetl.duckdb").exists()


def test_validate_only_and_quarantine_listing(
    trades: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    checked = runner.invoke(main, ["replay", str(trades), "--validate-only"])
    assert checked.exit_code == 0, checked.output
    assert not Path("histetl.duckdb").exists()
    listing = runner.invoke(main, ["quarantine"])
    assert "size_positive: 2" in listing.output
    one = next(Path("quarantine").rglob("*.parquet"))
    shown = runner.invoke(main, ["quarantine", str(one), "--rows", "2"])
    assert shown.exit_code == 0
    assert "size_positive" in shown.output


def test_status_shows_the_ledger(
    trades: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["status"]).output.strip() == "nothing loaded yet"
    assert runner.invoke(main, ["replay", str(trades)]).exit_code == 0
    status = runner.invoke(main, ["status"])
    assert "trades" in status.output
    assert "loaded=298" in status.output


def test_demo_loads_the_sample_data(tmp_path: Path) -> None:
    result = run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "what was loaded:" in result.stdout
    assert re.search(r"^trades\s+40000\s+ES\.c\.0,NQ\.c\.0", result.stdout, re.MULTILINE)
    again = run("demo", cwd=tmp_path)  # idempotent: everything is already loaded
    assert "skipped" in again.stdout


def _keys(model: type[BaseModel], prefix: str) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            keys.extend(_keys(nested, key + "."))
        else:
            keys.append(key)
    return keys


def test_every_job_file_key_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    keys = _keys(JobFile, "") + _keys(JobSpec, "jobs[].")
    missing = [k for k in keys if f"`{k}`" not in readme]
    assert missing == []


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
