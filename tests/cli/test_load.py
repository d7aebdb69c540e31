"""histetl.cli.load: `histetl replay` and `demo`, and `histetl run` and `histetl jobs` end to
end: the CLI, the real databento client, the fake gateway, a DuckDB target. Exit codes: 0 ok,
1 failed, 2 config error, 3 quarantined rows with --fail-on-quarantine; a run that finds another
one holding the lock exits 0 with a message."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from loguru import logger

from histetl.cli import main
from histetl.source.databento.lock import JobLock
from histetl.synth import Defects
from tests.cli.conftest import cli
from tests.pipeline.test_run import (  # fixtures and helpers shared with the library tests
    DATASET,
    N_TRADES,
    RANGE,
    db_trades,
    gateway,
    gw,
    raw_files,
    synth_bytes,
    trades,
    write_job,
)
from tests.support.fake_gateway import FakeGateway, Scripted

__all__ = ["gateway", "gw", "trades"]  # fixtures, imported to be registered here


@pytest.fixture(autouse=True)
def _logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The CLI's log file goes to tmp_path/logs; loguru's sinks are reset after each test."""
    monkeypatch.setenv("HISTETL_LOG_DIR", str(tmp_path / "logs"))
    yield tmp_path / "logs"
    logger.remove()


def histetl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def log_text(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))


def test_run_loads_everything_and_a_second_run_does_nothing(
    gw: FakeGateway, tmp_path: Path
) -> None:
    job = write_job(tmp_path, gw)

    first = histetl("run", job)

    assert first.exit_code == 0, first.output
    assert "downloaded GLBX.MDP3/trades/es_trades/2023-12-14_2023-12-15." in first.stderr
    assert [line.split()[-1] for line in first.stdout.splitlines()[2:5]] == ["loaded"] * 3
    assert f"TOTAL {N_TRADES}" in " ".join(first.stdout.split())
    assert len(raw_files(tmp_path)) == 3
    gw.requests.clear()

    second = histetl("run", job)

    assert second.exit_code == 0, second.output
    assert gw.requests == []
    assert [line.split()[-1] for line in second.stdout.splitlines()[2:5]] == ["skipped"] * 3
    assert "downloaded" not in second.stderr
    assert len(db_trades(tmp_path / "h.duckdb")) == N_TRADES


def test_run_survives_429_and_500_responses(gw: FakeGateway, tmp_path: Path) -> None:
    gw.script(
        "timeseries.get_range",
        Scripted(status=429, headers={"Retry-After": "1"}),
        Scripted(status=500),
    )
    result = histetl("run", write_job(tmp_path, gw, max_wait_s=0.01))
    assert result.exit_code == 0, result.output
    assert "HTTP 429" in result.stderr
    assert "HTTP 500" in result.stderr
    assert "retrying in 0.0s" in result.stderr  # Retry-After: 1, capped by max_wait_s
    assert len(db_trades(tmp_path / "h.duckdb")) == N_TRADES


def test_dry_run_prints_the_plan_and_downloads_nothing(gw: FakeGateway, tmp_path: Path) -> None:
    result = histetl("run", write_job(tmp_path, gw), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "es_trades" in result.stdout
    assert "1,577 records" in result.stdout
    assert "to fetch: 3 chunks, 3,000 records, $0.3000 (budget no limit" in result.stdout
    assert "timeseries.get_range" not in [r.endpoint for r in gw.requests]
    assert not (tmp_path / "raw").exists()
    assert not (tmp_path / "h.duckdb").exists()


def test_over_budget_is_refused_with_the_figure_and_downloads_nothing(
    gw: FakeGateway, tmp_path: Path
) -> None:
    job = write_job(
        tmp_path,
        gw,
        f"name: es\n    {RANGE}\n    schema: trades\n    symbols: ES.c.0\n"
        "    stype_in: continuous\n    max_cost_usd: 0.1",
    )
    dry = histetl("run", job, "--dry-run")
    assert dry.exit_code == 1
    assert "OVER BUDGET" in dry.stdout

    result = histetl("run", job)

    assert result.exit_code == 1
    assert "job es would cost $0.30 for 3 chunks (3,000 records)" in result.stderr
    assert "more than max_cost_usd $0.10; nothing was downloaded" in result.stderr
    assert "timeseries.get_range" not in [r.endpoint for r in gw.requests]
    assert raw_files(tmp_path) == []


def test_wrong_key_fails_clearly_without_printing_the_key(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "db-" + "k3y" * 10
    monkeypatch.setenv("DATABENTO_API_KEY", wrong)
    gw.script("metadata.get_record_count", Scripted(status=500))  # a retry, logged

    result = histetl("-v", "run", write_job(tmp_path, gw, max_wait_s=0.01))

    assert result.exit_code == 1
    assert "HTTP 401" in result.stderr
    assert "check the API key in $DATABENTO_API_KEY" in result.stderr
    assert "Traceback" not in result.output
    assert "HTTP 500" in log_text(tmp_path)  # the log file was written...
    assert wrong not in result.output + log_text(tmp_path)  # ...without the key


def test_the_key_is_in_no_output_log_or_report(gw: FakeGateway, tmp_path: Path) -> None:
    gw.script(
        "timeseries.get_range",
        Scripted(status=503, body={"detail": f"key {gw.api_key} is busy"}),
    )
    report = tmp_path / "report.json"
    result = histetl("-v", "run", write_job(tmp_path, gw, max_wait_s=0.01), "--report", report)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert [c["status"] for c in data["chunks"]] == ["downloaded"] * 3
    assert data["totals"]["loaded"] == N_TRADES
    everything = result.output + log_text(tmp_path) + report.read_text()
    assert "key *** is busy" in everything
    assert gw.api_key not in everything


def test_a_database_password_is_never_printed(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HISTETL_DB", "mysql://etl:Pa55w0rd@db.internal/market")
    result = histetl("run", write_job(tmp_path, gw))
    assert result.exit_code == 2
    assert "mysql://etl:***@db.internal/market" in result.stderr
    assert "Pa55w0rd" not in result.output
    assert gw.requests == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("symbols: [ES.c.0]", "symbol: [ES.c.0]"), "jobs[0].symbol: unknown key"),
        (("schema: trades", "schema: trade"), "jobs[0].schema: unknown schema"),
        (("chunk_days: 1", "chunk_days: 0"), "jobs[0].chunk_days: Input should be greater"),
        (("raw_dir: raw", "raw_dirs: raw"), "raw_dirs: unknown key"),
    ],
    ids=["unknown-key", "bad-schema", "bad-chunk-days", "unknown-top-key"],
)
def test_bad_job_file_exits_2_naming_the_key_before_any_work(
    gw: FakeGateway, tmp_path: Path, edit: tuple[str, str], message: str
) -> None:
    job = write_job(tmp_path, gw)
    job.write_text(job.read_text().replace(*edit))
    result = histetl("run", job)
    assert result.exit_code == 2
    assert message in result.stderr
    assert str(job) in result.stderr
    assert gw.requests == []
    assert not (tmp_path / "raw").exists()


def test_missing_key_variable_and_unknown_job_exit_2(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = write_job(tmp_path, gw)
    unknown = histetl("run", job, "--job", "nope")
    assert unknown.exit_code == 2
    assert "no job named 'nope'" in unknown.stderr
    assert "jobs in this file: es_trades" in unknown.stderr

    monkeypatch.delenv("DATABENTO_API_KEY")
    missing = histetl("run", job)
    assert missing.exit_code == 2
    assert "DATABENTO_API_KEY is not set" in missing.stderr
    assert gw.requests == []


def test_a_second_run_while_one_is_running_exits_0_with_a_message(
    gw: FakeGateway, tmp_path: Path
) -> None:
    job = write_job(tmp_path, gw)
    with JobLock(tmp_path / "raw", ["es_trades"]):
        result = histetl("run", job)
    assert result.exit_code == 0
    assert "skipped: " in result.stderr
    assert "another histetl run holds the lock of this job (es_trades: pid" in result.stderr
    assert gw.requests == []


def test_fail_on_quarantine_exits_3(gateway: FakeGateway, tmp_path: Path) -> None:
    bad = synth_bytes(tmp_path, records=400, defects=Defects(zero_size=3))
    gateway.add_data(DATASET, "trades", bad)
    job = write_job(tmp_path, gateway, top="quarantine_dir: q\n")
    result = histetl("run", job, "--fail-on-quarantine")
    assert result.exit_code == 3, result.output
    assert "quarantined" in result.stdout
    assert list((tmp_path / "q").rglob("*.parquet"))


def test_db_from_env_overrides_the_job_file_and_db_option_overrides_both(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = write_job(tmp_path, gw)
    monkeypatch.setenv("HISTETL_DB", f"duckdb:///{tmp_path / 'env.duckdb'}")
    assert histetl("run", job).exit_code == 0
    assert len(db_trades(tmp_path / "env.duckdb")) == N_TRADES
    assert not (tmp_path / "h.duckdb").exists()

    assert histetl("run", job, "--db", f"duckdb:///{tmp_path / 'opt.duckdb'}").exit_code == 0
    assert len(db_trades(tmp_path / "opt.duckdb")) == N_TRADES  # same raw files, new target


def test_jobs_lists_chunk_status_without_the_network(gw: FakeGateway, tmp_path: Path) -> None:
    job = write_job(tmp_path, gw)
    before = histetl("jobs", job)
    assert before.exit_code == 0, before.output
    assert "es_trades: GLBX.MDP3 trades ES.c.0 (continuous), 3 chunks: 3 missing" in before.stdout
    assert "--dry-run` asks the API" in before.stdout

    histetl("run", job, "--job", "es_trades")
    gw.requests.clear()
    after = histetl("jobs", job)
    assert "3 chunks: 3 complete" in after.stdout
    assert "1,577 records" in after.stdout
    assert "nothing to fetch" in after.stdout
    assert gw.requests == []


# -- replay and demo ---------------------------------------------------------------------------


def test_replay_writes_a_reconciled_report_and_no_progress_redraws(
    trades_dbn: Path, tmp_path: Path
) -> None:
    result = cli("replay", str(trades_dbn), "--report", "r.json", cwd=tmp_path)
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


def test_replay_exit_codes(trades_dbn: Path, tmp_path: Path) -> None:
    assert cli("replay", str(trades_dbn), "--fail-on-quarantine", cwd=tmp_path).returncode == 3
    missing = cli("replay", "nope/*.dbn", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no DBN files match 'nope/*.dbn'" in missing.stderr
    broken = tmp_path / "broken.dbn"
    broken.write_bytes(b"DBN\x03" + b"\x00" * 10)
    failed = cli("replay", str(broken), cwd=tmp_path)
    assert failed.returncode == 1
    assert "broken.dbn" in failed.stderr
    bad_db = cli("replay", str(trades_dbn), "--db", "mysql://x", cwd=tmp_path)
    assert bad_db.returncode == 2
    assert "unsupported database URI scheme 'mysql'" in bad_db.stderr
    for result in (missing, failed, bad_db):
        assert "Traceback" not in result.stderr


def test_replay_when_report_and_html_are_one_file_stops_before_any_work(
    trades_dbn: Path, tmp_path: Path
) -> None:
    same = tmp_path / "out.json"
    outputs = ("--report", str(same), "--html", str(same))
    result = cli("replay", str(trades_dbn), *outputs, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"error: --html: --report and --html are the same file, {same}\n"
        "  hint: give each its own file name\n"
    )
    assert not same.exists()
    assert not (tmp_path / "histetl.duckdb").exists()  # nothing loaded


def test_a_file_name_with_a_newline_or_an_escape_cannot_forge_a_line_or_drive_the_terminal(
    trades_dbn: Path, tmp_path: Path
) -> None:
    forged = tmp_path / "x\nERROR   forged.dbn"
    forged.write_bytes(trades_dbn.read_bytes())
    colour = tmp_path / "y\x1b[31m.dbn"
    colour.write_bytes(b"not DBN")
    result = cli("replay", str(forged), str(colour), cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # the second is not a DBN file
    output = result.stdout + result.stderr
    assert "\x1b" not in output
    assert not [line for line in output.splitlines() if line.startswith("ERROR   forged")]
    assert "x\\nERROR   forged.dbn" in result.stdout  # the summary table, escaped
    assert "x\\nERROR   forged.dbn: 301 records, 298 loaded" in result.stderr
    assert "y\\x1b[31m.dbn" in result.stderr
    status = cli("status", cwd=tmp_path)
    assert status.stdout.rstrip().endswith("x\\nERROR   forged.dbn"), status.stdout


def test_histetl_db_env_sets_the_default_target(trades_dbn: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.duckdb"
    result = cli("replay", str(trades_dbn), cwd=tmp_path, env={"HISTETL_DB": f"duckdb:///{target}"})
    assert result.returncode == 0, result.stderr
    assert target.is_file()
    assert not (tmp_path / "histetl.duckdb").exists()


def test_demo_loads_the_sample_data(tmp_path: Path) -> None:
    result = cli("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "what was loaded:" in result.stdout
    assert re.search(r"^trades\s+40000\s+ES\.c\.0,NQ\.c\.0", result.stdout, re.MULTILINE)
    again = cli("demo", cwd=tmp_path)  # idempotent: everything is already loaded
    assert "skipped" in again.stdout
