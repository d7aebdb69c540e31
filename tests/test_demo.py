"""`histetl demo` writes coherent data: right after it, `histetl verify` passes, on DuckDB and
PostgreSQL, and the demo prints what it loaded on both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from histetl.demo import DEMO_FILES, demo_specs
from histetl.synth import grid_capacity
from tests.support.pgserver import PgServer, fresh_schema

HISTETL = [sys.executable, "-m", "histetl.cli"]
TABLES = ("trades", "tbbo", "ohlcv_1m", "statistics", "definition")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HISTETL, *args], capture_output=True, text=True, check=False, cwd=cwd, timeout=300
    )


def check_demo_then_verify(db: str, tmp_path: Path) -> None:
    demo = run("demo", "--db", db, "--dir", str(tmp_path / "demo"), cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "Traceback" not in demo.stdout + demo.stderr
    summary = demo.stdout.split("what was loaded:", 1)[1].strip().split("\n\n")[0].splitlines()
    assert "report page: " in demo.stdout.split("what was loaded:", 1)[1]
    rows = {line.split()[0]: line.split() for line in summary[1:]}
    assert set(rows) == set(TABLES)
    assert rows["trades"][1] == "40000"
    assert rows["trades"][2] == "ES.c.0,NQ.c.0"
    assert rows["definition"][2] == "ESH4,ESZ3,ESZ3-ESH4,NQH4,NQZ3,NQZ3-NQH4"
    verify = run("verify", "--db", db, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    lines = [line for line in verify.stdout.splitlines() if line[:4].strip()]
    checks = [line for line in lines if not line.startswith("verify ")]
    assert checks
    assert all(line.split()[0] in ("PASS", "SKIP") for line in checks), verify.stdout
    by_check = {(line.split()[1], line.split()[2]): line.split()[0] for line in checks}
    assert by_check[("gaps", "ohlcv_1m")] == "PASS"
    assert by_check[("definitions", "-")] == "PASS"
    for table in TABLES:
        assert by_check[("rules", table)] == "PASS"
        assert by_check[("ledger", table)] == "PASS"


def test_demo_then_verify_on_duckdb_passes_every_check(tmp_path: Path) -> None:
    check_demo_then_verify(f"duckdb:///{tmp_path / 'demo.duckdb'}", tmp_path)


def test_demo_then_verify_on_postgres_prints_the_summary_and_passes(
    tmp_path: Path, pg_server: PgServer
) -> None:
    with fresh_schema(pg_server.uri, "demo") as (uri, _schema):
        check_demo_then_verify(uri, tmp_path)


def test_demo_bars_fill_every_minute_of_every_session() -> None:
    (bars,) = [s for s in demo_specs() if s.schema == "ohlcv-1m"]
    assert bars.records == grid_capacity(bars) > 0
    assert [s.schema for s in demo_specs()] == [f[0] for f in DEMO_FILES]
    with pytest.raises(ValueError, match="not on an interval grid"):
        grid_capacity(demo_specs()[0])
