"""histetl.targets.base: the ledger's SQL (run on DuckDB), the generic SQL reader over a real
connection, TimescaleDB option refusals and the file-target URI forms."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import pytest

from histetl.errors import ConfigError, LoadError
from histetl.interrupt import CANCEL, Interrupted
from histetl.targets.base import (
    LEDGER_COLUMNS,
    LEDGER_SELECT,
    LEDGER_TABLE,
    LedgerEntry,
    SqlReader,
    TimescaleOptions,
    file_path,
    ledger_params,
    ledger_upsert_sql,
    local_path,
    stopped_by_signal,
)
from histetl.targets.duckdb.sink import _LEDGER_DDL

NEW_YORK = dt.timezone(dt.timedelta(hours=-5))
ENTRY = LedgerEntry(
    sha256="ab" * 32,
    table="trades",
    path="/data/a.dbn.zst",
    dataset="GLBX.MDP3",
    schema="trades",
    records=100,
    loaded=90,
    duplicates=4,
    quarantined=6,
    run_id="run-1",
    loaded_at=dt.datetime(2023, 12, 14, 9, 30, tzinfo=NEW_YORK),
)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute(_LEDGER_DDL)
        yield connection


def upsert(con: duckdb.DuckDBPyConnection, entry: LedgerEntry) -> None:
    con.execute(ledger_upsert_sql(["?"] * len(LEDGER_COLUMNS)), ledger_params(entry))


def test_ledger_params_follow_the_columns_with_the_time_in_utc() -> None:
    params = ledger_params(ENTRY)

    assert len(params) == len(LEDGER_COLUMNS)
    assert dict(zip(LEDGER_COLUMNS, params, strict=True))["loaded_at"] == dt.datetime(
        2023, 12, 14, 14, 30, tzinfo=dt.UTC
    )
    assert params[:3] == ("ab" * 32, "trades", "/data/a.dbn.zst")


def test_a_ledger_row_reads_back_as_written(con: duckdb.DuckDBPyConnection) -> None:
    upsert(con, ENTRY)

    (row,) = con.execute(LEDGER_SELECT).fetchall()

    assert LedgerEntry(*row) == replace(ENTRY, loaded_at=ENTRY.loaded_at.astimezone(dt.UTC))


def test_a_forced_reload_replaces_the_counts_but_keeps_dataset_and_schema(
    con: duckdb.DuckDBPyConnection,
) -> None:
    upsert(con, ENTRY)
    again = replace(
        ENTRY,
        path="/elsewhere/a.dbn.zst",
        dataset="XNAS.ITCH",
        schema="mbp-1",
        loaded=94,
        duplicates=0,
        run_id="run-2",
        loaded_at=dt.datetime(2023, 12, 15, tzinfo=dt.UTC),
    )
    other_table = replace(ENTRY, table="trades_mapped")

    upsert(con, again)
    upsert(con, other_table)

    rows = con.execute(f"{LEDGER_SELECT} ORDER BY target_table").fetchall()
    assert [LedgerEntry(*r) for r in rows] == [
        replace(again, dataset="GLBX.MDP3", schema="trades"),
        replace(other_table, loaded_at=ENTRY.loaded_at.astimezone(dt.UTC)),
    ]
    assert con.execute(f"SELECT count(*) FROM {LEDGER_TABLE}").fetchone() == (2,)


@pytest.fixture
def adbc(tmp_path: Path) -> Iterator[Any]:
    """An ADBC connection (the DB-API the readers get) to a DuckDB file with a ledger and t."""
    import adbc_driver_duckdb.dbapi as duckdb_dbapi

    path = tmp_path / "r.duckdb"
    with duckdb.connect(str(path)) as setup:
        setup.execute(_LEDGER_DDL)
        setup.execute("CREATE TABLE t AS SELECT range AS x FROM range(5000)")
    connection = duckdb_dbapi.connect(str(path))
    yield connection
    with contextlib.suppress(Exception):
        connection.close()


def test_sql_reader_streams_lists_tables_and_counts(adbc: Any) -> None:
    reader = SqlReader(adbc, "duckdb:///r.duckdb", owned=False)

    stream = reader.stream("SELECT x FROM t ORDER BY x")
    values = stream.read_all().column("x").to_pylist()
    deleted = reader.count("DELETE FROM t WHERE x >= 1000")

    assert values == list(range(5000))
    assert reader.tables() == {LEDGER_TABLE, "t"}
    assert deleted == 4000
    reader.close()  # not owned: the connection stays open
    assert SqlReader(adbc, "x").count("SELECT count(*) FROM t") == 1000


def test_sql_reader_turns_a_failed_statement_into_one_load_error(adbc: Any) -> None:
    reader = SqlReader(adbc, "duckdb:///shown.duckdb", owned=False)
    late = reader.stream("SELECT CASE WHEN x > 4500 THEN error('late ' || x) ELSE x END FROM t")
    with pytest.raises(LoadError, match=r"query failed: .*late 4501"):  # while it streams
        late.read_all()
    adbc.rollback()

    with pytest.raises(LoadError) as caught:
        reader.stream("SELECT * FROM missing_table")
    with pytest.raises(LoadError, match="query failed"):
        reader.count("DELETE FROM missing_table")

    assert caught.value.where == "duckdb:///shown.duckdb"
    assert caught.value.what.startswith("query failed: ")
    assert "missing_table" in caught.value.what
    assert "\n" not in caught.value.what


def test_an_owned_reader_closes_its_connection_once(adbc: Any) -> None:
    reader = SqlReader(adbc, "duckdb:///r.duckdb")

    reader.close()
    reader.close()

    with pytest.raises(Exception, match="INVALID_STATE"):  # the ADBC connection is released
        adbc.cursor().execute("SELECT 1")


def test_timescale_options_refuse_only_when_the_user_gave_them() -> None:
    TimescaleOptions().refuse("postgresql://h/db", "has no timescaledb extension")
    given = TimescaleOptions(retain_for="30 days", given=("--retain-for", "--compress-after"))

    with pytest.raises(ConfigError) as caught:
        given.refuse("postgresql://h/db", "has no timescaledb extension")

    assert caught.value.what == (
        "--retain-for, --compress-after need TimescaleDB, but postgresql://h/db has no "
        "timescaledb extension"
    )
    assert caught.value.where == "--retain-for"


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("duckdb:///histetl.duckdb", "histetl.duckdb"),
        ("duckdb:////abs/olute.duckdb", "/abs/olute.duckdb"),
        ("DUCKDB:///x.duckdb", "x.duckdb"),
        ("delta:///lake", "lake"),
        ("delta://bucket/lake", None),  # not three slashes: not a local file
        ("postgresql://localhost/db", None),
        ("s3://bucket/lake", None),
    ],
)
def test_file_path(uri: str, path: str | None) -> None:
    assert file_path(uri) == path


def test_local_path_names_what_it_expected() -> None:
    assert local_path("duckdb:///a.duckdb", "DuckDB", "use duckdb:///file") == "a.duckdb"
    with pytest.raises(ConfigError) as caught:
        local_path("duckdb://a.duckdb", "DuckDB", "use duckdb:///file")

    assert caught.value.what == "bad DuckDB URI 'duckdb://a.duckdb'"
    assert caught.value.hint == "use duckdb:///file"
    assert caught.value.where == "--db"


def test_local_path_with_three_slashes_before_an_existing_absolute_folder_asks_which_was_meant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    written = str(tmp_path / "x.duckdb").lstrip("/")  # duckdb:///tmp/...: relative
    with pytest.raises(ConfigError) as caught:
        local_path(f"duckdb:///{written}", "DuckDB", "use duckdb:///file")

    assert caught.value.where == "--db"
    assert f"names {written} in the current folder" in caught.value.what
    assert caught.value.hint == (
        f"for /{written} write duckdb:////{written}; to create it here write duckdb:///./{written}"
    )
    assert not (elsewhere / written.split("/")[0]).exists()


def test_local_path_keeps_a_relative_path_that_is_explicit_or_has_no_absolute_twin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    written = str(tmp_path / "x.duckdb").lstrip("/")
    assert local_path(f"duckdb:///./{written}", "DuckDB", "-") == f"./{written}"
    assert local_path("delta:///no-such-top-folder/lake", "Delta Lake", "-") == (
        "no-such-top-folder/lake"
    )
    (tmp_path / written.split("/")[0]).mkdir()  # the folder exists here: it is meant
    assert local_path(f"duckdb:///{written}", "DuckDB", "-") == written


@contextlib.contextmanager
def _sigint_after(seconds: float) -> Iterator[None]:
    """SIGINT to this process after `seconds` (from a timer thread, as a terminal's Ctrl-C
    would arrive), with a no-op handler in place so a signal outside the driver's call cannot
    stop the test session; the stop flag it leaves is cleared afterwards."""
    import threading

    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        CANCEL.reset()


def _cancelled_by_ctrl_c(connect: Any, sql: str) -> BaseException:
    """The driver error of a statement running when SIGINT arrives (ADBC takes the signal and
    cancels the statement)."""
    with connect() as conn, conn.cursor() as cur, _sigint_after(0.5):
        try:
            cur.execute(sql)
            cur.fetchall()
        except Exception as exc:  # the driver's error classes
            return exc
    raise AssertionError(f"{sql}: not cancelled by SIGINT")


def _stop_of(error: BaseException) -> tuple[Interrupted | None, int | None]:
    """What stopped_by_signal makes of `error`, and the stop flag it left (then cleared)."""
    try:
        return stopped_by_signal(error), CANCEL.signum
    finally:
        CANCEL.reset()


def test_stopped_by_signal_when_ctrl_c_cancels_a_duckdb_statement_is_a_stop(
    tmp_path: Path,
) -> None:
    import adbc_driver_duckdb.dbapi

    def connect() -> Any:
        return adbc_driver_duckdb.dbapi.connect(str(tmp_path / "t.duckdb"))

    error = _cancelled_by_ctrl_c(connect, "SELECT sum(i * i) FROM range(20000000000) t(i)")
    stop, flag = _stop_of(error)
    assert isinstance(stop, Interrupted), error
    assert (stop.exit_code, flag) == (130, signal.SIGINT)
    assert _stop_of(LoadError("load failed: disk full")) == (None, None)


def test_sql_reader_when_ctrl_c_cancels_its_statement_raises_keyboard_interrupt(
    adbc: Any,
) -> None:
    reader = SqlReader(adbc, "duckdb:///r.duckdb", owned=False)
    with _sigint_after(0.5), pytest.raises(KeyboardInterrupt):
        reader.count("SELECT count(*) FROM range(20000000000) t(i) WHERE i * 7 % 13 = 1")


@pytest.mark.postgres
def test_stopped_by_signal_when_ctrl_c_cancels_a_postgres_statement_is_a_stop(
    pg_server: Any,
) -> None:
    import adbc_driver_postgresql.dbapi

    error = _cancelled_by_ctrl_c(
        lambda: adbc_driver_postgresql.dbapi.connect(pg_server.uri), "SELECT pg_sleep(20)"
    )
    stop, flag = _stop_of(error)
    assert isinstance(stop, Interrupted), error
    assert flag == signal.SIGINT
