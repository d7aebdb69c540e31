"""Smoke tests for the test-only database servers in tests/support.

Every generic test runs against a native PostgreSQL (tests/support/pgserver.py) and
against the PGlite TimescaleDB server (tests/support/pgtimescale.py); the TimescaleDB
tests run against the latter only. Both servers are started once for this module.
"""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import time
from collections.abc import Iterator

import adbc_driver_postgresql.dbapi as pg_dbapi
import psycopg
import pyarrow as pa
import pytest

from tests.support.pgserver import PgServer, fresh_schema, with_search_path

N_ROWS = 100_000
BASE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("timescale", marks=pytest.mark.timescale),
    ],
)
def server(request: pytest.FixtureRequest) -> PgServer:
    name = "pg_server" if request.param == "postgres" else "timescale_server"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def schema_uri(server: PgServer) -> Iterator[str]:
    with fresh_schema(server.uri) as (uri, _schema):
        yield uri


@pytest.fixture
def ts_uri(timescale_server: PgServer) -> Iterator[str]:
    with fresh_schema(timescale_server.uri, prefix="ts") as (uri, _schema):
        yield uri


# --------------------------------------------------------------------------- helpers


def market_table(n: int, *, start: int = 0, price_offset: int = 0) -> pa.Table:
    """n rows: ts one second apart, 10 instruments, numeric(19,9) prices, text symbols."""
    idx = range(start, start + n)
    return pa.table(
        {
            "ts": pa.array(
                [BASE + dt.timedelta(seconds=i) for i in idx], pa.timestamp("us", tz="UTC")
            ),
            "instrument_id": pa.array([i % 10 for i in idx], pa.int64()),
            "price": pa.array(
                [decimal.Decimal(i + price_offset).scaleb(-3) for i in idx],
                pa.decimal128(19, 9),
            ),
            "symbol": pa.array([f"SYM{i % 10}" for i in idx], pa.string()),
        }
    )


def expected_price_sum(start: int, n: int, price_offset: int = 0) -> decimal.Decimal:
    total = sum(range(start + price_offset, start + n + price_offset))
    return decimal.Decimal(total).scaleb(-3).quantize(decimal.Decimal("1e-9"))


def scalar(uri: str, sql: str) -> object:
    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


TABLE_DDL = """
CREATE TABLE ticks (
    ts timestamptz NOT NULL,
    instrument_id bigint NOT NULL,
    price numeric(19, 9) NOT NULL,
    symbol text NOT NULL
)
"""

UPSERT_NOTHING = "INSERT INTO ticks SELECT * FROM staging ON CONFLICT DO NOTHING"
UPSERT_UPDATE = """
INSERT INTO ticks SELECT * FROM staging
ON CONFLICT (instrument_id, ts) DO UPDATE SET price = EXCLUDED.price, symbol = EXCLUDED.symbol
"""


def ingest_and_upsert(uri: str) -> None:
    """adbc_ingest (COPY FROM STDIN binary) + INSERT ... ON CONFLICT, as the loader does."""
    with pg_dbapi.connect(uri) as conn:
        with conn.cursor() as cur:
            cur.adbc_ingest("staging", market_table(N_ROWS), mode="create_append")
            cur.execute(UPSERT_NOTHING)
            assert cur.rowcount == N_ROWS
            cur.execute("DROP TABLE staging")
        conn.commit()
        # Half overlapping (new prices), half new rows.
        with conn.cursor() as cur:
            half = N_ROWS // 2
            staging = market_table(N_ROWS, start=half, price_offset=7)
            cur.adbc_ingest("staging", staging, mode="create_append")
            cur.execute(UPSERT_NOTHING)
            assert cur.rowcount == half
            cur.execute(UPSERT_UPDATE)
            assert cur.rowcount == N_ROWS
            cur.execute("SELECT count(*), sum(price)::text, count(DISTINCT symbol) FROM ticks")
            count, total, symbols = cur.fetchone()  # type: ignore[misc]
        conn.commit()
    assert count == N_ROWS + half
    assert symbols == 10
    want = expected_price_sum(0, half) + expected_price_sum(half, N_ROWS, price_offset=7)
    assert decimal.Decimal(total) == want


# --------------------------------------------------------------------------- generic


def test_fresh_schema_sets_search_path(server: PgServer) -> None:
    with fresh_schema(server.uri, prefix="Probe-1") as (schema_uri, schema):
        assert schema.startswith("probe_1_")
        check_search_path(schema_uri, schema)
    with psycopg.connect(server.uri) as conn:
        gone = conn.execute("SELECT to_regnamespace(%s)", (schema,)).fetchone()
        assert gone == (None,)


def check_search_path(schema_uri: str, schema: str) -> None:
    with pg_dbapi.connect(schema_uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT current_setting('search_path'), current_schema()")
        assert cur.fetchone() == (f"{schema},public", schema)
        cur.execute("CREATE TABLE probe (x int)")
        conn.commit()
    with psycopg.connect(schema_uri) as conn:
        row = conn.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'probe'"
        ).fetchone()
        assert row == (schema,)
        assert conn.execute("SHOW search_path").fetchone() == (f"{schema},public",)


def test_with_search_path_keeps_other_options() -> None:
    uri = with_search_path("postgresql://u@h:1/db?options=-cwork_mem%3D8MB&sslmode=disable", "s")
    assert "sslmode=disable" in uri
    assert "options=-cwork_mem%3D8MB%20-csearch_path%3Ds" in uri


def test_extended_protocol_parameters(schema_uri: str) -> None:
    with psycopg.connect(schema_uri) as conn:
        row = conn.execute("SELECT %s::bigint + 1, %s::text, %s::numeric", (41, "x", 1.5))
        assert row.fetchone() == (42, "x", decimal.Decimal("1.5"))
        conn.execute("CREATE TABLE kv (k int PRIMARY KEY, v text)")
        with conn.cursor() as cur:
            # prepare=True: named server-side prepared statement, reused
            for i in range(5):
                cur.execute("INSERT INTO kv VALUES (%s, %s)", (i, f"v{i}"), prepare=True)
            cur.executemany("INSERT INTO kv VALUES (%s, %s)", [(i, f"v{i}") for i in range(5, 50)])
            cur.execute("SELECT count(*), max(v) FROM kv WHERE k >= %s", (10,))
            assert cur.fetchone() == (40, "v49")
        conn.commit()
    with pg_dbapi.connect(schema_uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT $1::bigint * 2, $2::text", parameters=(21, "y"))
        assert cur.fetchone() == (42, "y")
        cur.executemany("INSERT INTO kv VALUES ($1, $2)", [(100, "a"), (101, "b")])
        cur.execute("SELECT count(*) FROM kv")
        assert cur.fetchone() == (52,)
        conn.commit()


def test_adbc_ingest_and_upsert(schema_uri: str) -> None:
    with pg_dbapi.connect(schema_uri) as conn:
        with conn.cursor() as cur:
            cur.execute(TABLE_DDL)
            cur.execute("CREATE UNIQUE INDEX ticks_uq ON ticks (instrument_id, ts)")
        conn.commit()
    ingest_and_upsert(schema_uri)
    with pg_dbapi.connect(schema_uri) as conn, conn.cursor() as cur:
        cur.execute("SELECT ts, instrument_id, symbol FROM ticks ORDER BY ts LIMIT 2")
        got = cur.fetch_arrow_table()
    assert got.column("ts").to_pylist() == [BASE, BASE + dt.timedelta(seconds=1)]
    assert got.column("symbol").to_pylist() == ["SYM0", "SYM1"]


def test_psycopg_copy_text_binary_and_out(schema_uri: str) -> None:
    with psycopg.connect(schema_uri) as conn:
        conn.execute("CREATE TABLE c (a int, b text, t timestamptz)")
        with conn.cursor() as cur:
            with cur.copy("COPY c (a, b, t) FROM STDIN") as copy:
                for i in range(1000):
                    copy.write_row((i, f"r{i}", BASE))
            with cur.copy("COPY c (a, b, t) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "text", "timestamptz"])
                for i in range(1000, 3000):
                    copy.write_row((i, f"r{i}", BASE))
            assert cur.execute("SELECT count(*), sum(a) FROM c").fetchone() == (3000, 4498500)
            with cur.copy("COPY (SELECT a, b FROM c ORDER BY a LIMIT 3) TO STDOUT") as copy:
                copy.set_types(["int4", "text"])
                assert list(copy.rows()) == [(0, "r0"), (1, "r1"), (2, "r2")]
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO c (a) VALUES (-1)")
            # A failing COPY (bad data) inside a transaction, then rollback and go on.
            with (
                pytest.raises(psycopg.errors.InvalidTextRepresentation),
                cur.copy("COPY c (a) FROM STDIN") as copy,
            ):
                copy.write(b"not-a-number\n")
        conn.rollback()
        assert conn.execute("SELECT count(*), min(a) FROM c").fetchone() == (3000, 0)


def test_transactions(schema_uri: str) -> None:
    with psycopg.connect(schema_uri, autocommit=True) as conn:
        conn.execute("CREATE TABLE tx (x int PRIMARY KEY)")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO tx VALUES (1)")
        conn.execute("COMMIT")
        conn.execute("BEGIN")
        conn.execute("INSERT INTO tx VALUES (2)")
        conn.execute("ROLLBACK")
        conn.execute("BEGIN")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO tx VALUES (1)")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.execute("ROLLBACK")
        assert conn.execute("SELECT array_agg(x ORDER BY x) FROM tx").fetchone() == ([1],)
        with conn.transaction():  # savepoints via nested transaction blocks
            conn.execute("INSERT INTO tx VALUES (3)")
            with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
                conn.execute("INSERT INTO tx VALUES (3)")
            conn.execute("INSERT INTO tx VALUES (4)")
        assert conn.execute("SELECT count(*) FROM tx").fetchone() == (3,)

    with pg_dbapi.connect(schema_uri) as conn:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO tx VALUES (10)")
        conn.rollback()
        with conn.cursor() as cur:
            with pytest.raises(pg_dbapi.IntegrityError):
                cur.execute("INSERT INTO tx VALUES (1)")
            conn.rollback()
            cur.execute("INSERT INTO tx VALUES (11)")
            conn.commit()
            cur.execute("SELECT count(*) FROM tx")
            assert cur.fetchone() == (4,)


def test_advisory_locks(schema_uri: str) -> None:
    with psycopg.connect(schema_uri, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(4242)")
        assert conn.execute("SELECT pg_try_advisory_lock(4243)").fetchone() == (True,)
        held = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid IN (4242, 4243)"
        ).fetchone()
        assert held == (2,)
        assert conn.execute("SELECT pg_advisory_unlock(4243)").fetchone() == (True,)
        with conn.transaction():
            assert conn.execute("SELECT pg_try_advisory_xact_lock(7)").fetchone() == (True,)
        # 4242 is still held: closing the connection must release it.
    with pg_dbapi.connect(schema_uri) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid IN (4242, 4243)"
        )
        assert cur.fetchone() == (0,)
        cur.execute("SELECT pg_try_advisory_lock(4242)")
        assert cur.fetchone() == (True,)
        cur.execute("SELECT pg_advisory_unlock_all()")
        conn.commit()


def test_advisory_lock_blocks_another_session(server: PgServer, schema_uri: str) -> None:
    if not server.concurrent_connections or "emcc" in str(scalar(schema_uri, "SELECT version()")):
        pytest.skip("the PGlite server serves one connection at a time")
    with (
        psycopg.connect(schema_uri, autocommit=True) as one,
        psycopg.connect(schema_uri, autocommit=True) as two,
    ):
        assert one.execute("SELECT pg_try_advisory_lock(99)").fetchone() == (True,)
        assert two.execute("SELECT pg_try_advisory_lock(99)").fetchone() == (False,)
        one.execute("SELECT pg_advisory_unlock(99)")
        assert two.execute("SELECT pg_try_advisory_lock(99)").fetchone() == (True,)


def test_sequential_connections_do_not_share_session_state(schema_uri: str) -> None:
    conn = psycopg.connect(schema_uri, autocommit=True)
    try:
        work_mem = conn.execute("SHOW work_mem").fetchone()
        assert work_mem != ("7MB",)
        conn.execute("CREATE TEMP TABLE scratch (x int)")
        conn.execute("SET work_mem = '7MB'")
        conn.execute("PREPARE p AS SELECT 1")
        conn.execute("BEGIN")  # left open: must be rolled back on disconnect
        conn.execute("CREATE TABLE never_committed (x int)")
    finally:
        conn.close()
    for _ in range(3):
        with psycopg.connect(schema_uri) as conn:
            assert conn.execute("SHOW work_mem").fetchone() == work_mem
            assert conn.execute("SELECT to_regclass('scratch')").fetchone() == (None,)
            assert conn.execute("SELECT to_regclass('never_committed')").fetchone() == (None,)
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
            assert conn.execute("SHOW client_min_messages").fetchone() == ("notice",)


# --------------------------------------------------------------------------- timescale


@pytest.mark.timescale
def test_timescale_hypertable_ingest_upsert_compress(ts_uri: str) -> None:
    with pg_dbapi.connect(ts_uri) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            cur.execute(TABLE_DDL)
            cur.execute(
                "SELECT * FROM create_hypertable('ticks', by_range('ts', INTERVAL '1 day'))"
            )
            assert cur.fetchone()[1] is True  # type: ignore[index]
            cur.execute("CREATE UNIQUE INDEX ticks_uq ON ticks (instrument_id, ts)")
            # The older signature works too.
            cur.execute("CREATE TABLE old_style (ts timestamptz NOT NULL, v int)")
            cur.execute(
                "SELECT * FROM create_hypertable('old_style', 'ts', "
                "chunk_time_interval => INTERVAL '1 hour')"
            )
            assert cur.fetchone()[2:] == ("old_style", True)  # type: ignore[index]
        conn.commit()

    ingest_and_upsert(ts_uri)

    with pg_dbapi.connect(ts_uri) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "ALTER TABLE ticks SET (timescaledb.compress, "
                "timescaledb.compress_segmentby = 'instrument_id')"
            )
            cur.execute(
                "SELECT count(*) FROM (SELECT compress_chunk(c) FROM show_chunks('ticks') c)"
            )
            (n_chunks,) = cur.fetchone()  # type: ignore[misc]
            cur.execute(
                "SELECT count(*) FILTER (WHERE is_compressed), count(*) "
                "FROM timescaledb_information.chunks WHERE hypertable_name = 'ticks'"
            )
            assert cur.fetchone() == (n_chunks, n_chunks)
        conn.commit()

        with conn.cursor() as cur:
            # Re-insert existing rows into compressed chunks: nothing happens.
            cur.adbc_ingest("again", market_table(1000), mode="create_append")
            cur.execute("INSERT INTO ticks SELECT * FROM again ON CONFLICT DO NOTHING")
            assert cur.rowcount == 0
            # Upsert into a compressed chunk.
            cur.execute(
                "INSERT INTO ticks SELECT ts, instrument_id, price + 1, symbol FROM again "
                "WHERE instrument_id = 3 "
                "ON CONFLICT (instrument_id, ts) DO UPDATE SET price = EXCLUDED.price"
            )
            assert cur.rowcount == 100
            cur.execute("SELECT price::text FROM ticks WHERE instrument_id = 3 ORDER BY ts LIMIT 1")
            assert cur.fetchone() == ("1.003000000",)
            cur.execute("SELECT count(*) FROM ticks")
            assert cur.fetchone() == (N_ROWS + N_ROWS // 2,)
        conn.commit()


@pytest.mark.timescale
def test_timescale_time_bucket_with_psycopg(ts_uri: str) -> None:
    with psycopg.connect(ts_uri) as conn:
        conn.execute("CREATE TABLE m (ts timestamptz NOT NULL, v double precision)")
        conn.execute("SELECT create_hypertable('m', 'ts')")  # record result: fine for psycopg
        conn.execute(
            "INSERT INTO m SELECT %s + make_interval(mins => g), g FROM generate_series(0, 179) g",
            (BASE,),
        )
        rows = conn.execute(
            "SELECT time_bucket('1 hour', ts) AS b, count(*), avg(v) FROM m GROUP BY b ORDER BY b"
        ).fetchall()
    assert [r[1] for r in rows] == [60, 60, 60]
    assert rows[0][0] == BASE


@pytest.mark.timescale
def test_timescale_second_client_waits_for_the_first(timescale_server: PgServer) -> None:
    if timescale_server.external:
        pytest.skip("only meaningful for the PGlite server")
    uri = timescale_server.uri
    first = psycopg.connect(uri)
    results: list[object] = []

    def second() -> None:
        with psycopg.connect(uri, connect_timeout=30) as conn:
            results.append(conn.execute("SELECT 'second'").fetchone())

    try:
        first.execute("SELECT 1")
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        assert results == []  # still queued behind the first connection
    finally:
        first.close()
    thread.join(30)
    assert results == [("second",)]
