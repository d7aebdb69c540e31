"""histetl.targets.postgres.client: ADBC's low-level API in DB-API shaped calls, on the
session's real PostgreSQL; a PostgreSQL load imports neither pandas nor ADBC's DB-API layer."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

from histetl.errors import LoadError
from histetl.synth import SynthSpec, write_dbn
from histetl.targets.base import RetryPolicy
from histetl.targets.postgres import client
from histetl.targets.postgres.client import _param
from histetl.targets.postgres.conn import connect
from tests.support.pgserver import free_port
from tests.test_precheck import histetl

AWARE = dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
NAIVE = dt.datetime(2024, 2, 29, 12, 30, 1, 5)
PARAMS = (None, True, False, -(2**63), 2**63 - 1, 0.1, "", "it's née", AWARE, NAIVE)


def test_parameters_are_typed_as_pyarrow_infers_them() -> None:
    for value in PARAMS:
        built = _param(value)
        built.validate(full=True)
        assert built.equals(pa.array([value]))


def test_parameters_round_trip_and_results_come_as_tuples_and_arrow(pg_uri: str) -> None:
    conn, guard = connect(pg_uri, RetryPolicy())
    try:
        with conn.cursor() as cur:
            placeholders = ", ".join(f"${i + 1} AS c{i}" for i in range(len(PARAMS)))
            cur.execute(f"SELECT {placeholders}", PARAMS)
            assert cur.description == [f"c{i}" for i in range(len(PARAMS))]
            assert cur.fetchall() == [PARAMS]
            cur.execute("CREATE TEMP TABLE t (n bigint)")
            assert cur.description == []
            assert cur.fetchall() == []
            cur.execute("INSERT INTO t SELECT generate_series(1, 5)")
            assert cur.rowcount == 5
            batch = pa.record_batch([pa.array([6, 7], pa.int64())], names=["n"])
            assert (
                cur.adbc_ingest(
                    "t", pa.RecordBatchReader.from_batches(batch.schema, [batch]), temporary=True
                )
                == 2
            )
            cur.execute("SELECT count(*), sum(n)::bigint FROM t")
            assert cur.fetchone() == (7, 28)
            assert cur.fetchone() is None
            cur.execute("SELECT n FROM t ORDER BY n")
            assert cur.fetch_record_batch().read_all().column(0).to_pylist() == list(range(1, 8))
            with pytest.raises(Exception, match="no result to fetch"):
                cur.fetch_arrow_table()
        conn.rollback()
        left_open = conn.cursor()
        left_open.execute("SELECT 1")
    finally:
        conn.close()  # closes the cursor left open (ADBC refuses otherwise)
        guard.close()


def test_connections_share_the_driver_database_each_with_its_own_settings(pg_uri: str) -> None:
    def lock_timeout(policy: RetryPolicy) -> str:
        conn, guard = connect(pg_uri, policy)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('lock_timeout')")
                (row,) = cur.fetchall()
            conn.rollback()
        finally:
            conn.close()
            guard.close()
        return str(row[0])

    assert lock_timeout(RetryPolicy(lock_timeout_s=7)) == "7s"
    shared = dict(client._SHARED)
    assert lock_timeout(RetryPolicy(lock_timeout_s=3)) == "3s"  # the second conninfo applies
    assert shared == client._SHARED  # through the same database (its types read once)
    assert list(shared) == [pg_uri]


def test_a_server_that_cannot_be_reached_leaves_no_shared_database(pg_uri: str) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(LoadError, match="cannot connect"):
        connect(unreachable, RetryPolicy(max_attempts=1))
    assert unreachable not in client._SHARED
    conn, guard = connect(pg_uri, RetryPolicy())  # another target connects as before
    conn.close()
    guard.close()


def test_a_failed_statement_keeps_the_server_sqlstate(pg_uri: str) -> None:
    conn, guard = connect(pg_uri, RetryPolicy())
    try:
        with conn.cursor() as cur, pytest.raises(Exception, match="no_such_table") as failed:
            cur.execute("SELECT * FROM no_such_table")
        assert getattr(failed.value, "sqlstate", None) == "42P01"
    finally:
        conn.close()
        guard.close()


@pytest.mark.postgres
def test_a_first_postgres_load_imports_no_pandas_nor_the_db_api_layer(
    tmp_path: Path, pg_uri: str
) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=5000, seed=3), path)
    heavy = ("pandas", "pyarrow.dataset", "adbc_driver_manager.dbapi")

    result, imported = histetl(
        tmp_path, "replay", path, "--db", pg_uri, "--report", "r.json", watch=heavy
    )

    assert result.returncode == 0, result.stderr
    assert imported == []
    (file,) = json.loads((tmp_path / "r.json").read_text())["files"]
    assert (file["status"], file["loaded"]) == ("loaded", 5000)
