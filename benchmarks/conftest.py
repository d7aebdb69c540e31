"""Fixtures of the pytest-benchmark files: small seeded data (HISTETL_BENCH_TEST_ROWS, default
200k trades) and a private PostgreSQL (skipped when its binaries are missing)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmarks.data import DataSet
from tests.support.pgserver import PgServer, fresh_schema, start_postgres

ROWS = int(os.environ.get("HISTETL_BENCH_TEST_ROWS", "200000"))
ROWWISE_ROWS = min(ROWS, 10_000)


@pytest.fixture(scope="session")
def data() -> DataSet:
    return DataSet()


@pytest.fixture(scope="session")
def trades(data: DataSet) -> Path:
    return data.trades(ROWS)


@pytest.fixture(scope="session")
def trades_zst(data: DataSet) -> Path:
    return data.trades(ROWS, zst=True)


@pytest.fixture(scope="session")
def mbp1(data: DataSet) -> Path:
    return data.mbp1(ROWS)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        server = start_postgres()
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    yield server
    server.stop()


@pytest.fixture
def new_pg_uri(pg_server: PgServer) -> Iterator[Callable[[], str]]:
    """Call it for a URI of a new, empty schema (one per benchmark round)."""
    opened: list[object] = []

    def make() -> str:
        manager = fresh_schema(pg_server.uri, "bench")
        uri, _schema = manager.__enter__()
        opened.append(manager)
        return uri

    yield make
    for manager in reversed(opened):
        manager.__exit__(None, None, None)  # type: ignore[attr-defined]
