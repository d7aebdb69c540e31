"""Shared fixtures: the real Databento sample files (skipped when absent)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.pgserver import PgServer, start_postgres
from tests.support.pgtimescale import TimescaleUnavailable, start_timescale
from tests.support.s3server import S3Server, start_s3

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "databento-samples"
SUPPORTED_SUFFIX = ".dbn.zst"


def sample_files() -> list[Path]:
    if not SAMPLES.is_dir():
        return []
    return sorted(SAMPLES.rglob(f"*{SUPPORTED_SUFFIX}"))


def sample_params() -> list[object]:
    files = sample_files()
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no samples at {SAMPLES}"))]
    return [pytest.param(p, id=f"{p.parent.name}/{p.name}") for p in files]


@pytest.fixture(autouse=True)
def _isolated_logs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the CLI's rotating log file out of the user's home."""
    monkeypatch.setenv("HISTETL_LOG_DIR", str(tmp_path_factory.getbasetemp() / "logs"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL the session starts from the machine's binaries (or $HISTETL_TEST_PG_URI)."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """An S3-compatible server (moto) the session starts on 127.0.0.1."""
    server = start_s3()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def timescale_server() -> Iterator[PgServer]:
    """PGlite + TimescaleDB over the wire protocol (or $HISTETL_TEST_TIMESCALE_URI). Skipped
    when unavailable, except under CI (env CI set), where that fails the run."""
    try:
        server = start_timescale()
    except TimescaleUnavailable as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"TimescaleDB test server unavailable under CI: {exc}", pytrace=False)
        pytest.skip(f"TimescaleDB test server unavailable: {exc}")
    yield server
    server.stop()
