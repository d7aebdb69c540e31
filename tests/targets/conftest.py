"""Real database servers for the sink tests: a PostgreSQL the session starts from the
machine's binaries (or $HISTETL_TEST_PG_URI) and TimescaleDB (PGlite + TimescaleDB over the
wire protocol, or $HISTETL_TEST_TIMESCALE_URI). Every test gets a schema of its own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pgserver import PgServer, fresh_schema


@pytest.fixture
def pg_uri(pg_server: PgServer) -> Iterator[str]:
    with fresh_schema(pg_server.uri) as (uri, _schema):
        yield uri


@pytest.fixture
def timescale_uri(timescale_server: PgServer) -> Iterator[str]:
    with fresh_schema(timescale_server.uri) as (uri, _schema):
        yield uri


@pytest.fixture(params=["postgres", "timescale"])
def db_uri(request: pytest.FixtureRequest) -> str:
    """Both targets: plain PostgreSQL and TimescaleDB."""
    name = "pg_uri" if request.param == "postgres" else "timescale_uri"
    return str(request.getfixturevalue(name))
