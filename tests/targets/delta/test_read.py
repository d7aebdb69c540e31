"""Reading a Delta lake back, on a local lake and on S3 (the session's moto server): `query`
gives byte for byte what it gives from a DuckDB target loaded with the same files, `verify`
the same checks, and a missing lake is one line (`resample` into a lake: test_resample.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from deltalake import CommitProperties

from histetl.targets.delta.ledger import LEDGER_KEY
from tests.conftest import SAMPLES
from tests.read.test_query import histetl, write_files
from tests.targets.delta.test_sink import Lake
from tests.targets.duckdb.test_sink import replay, trades


@pytest.fixture(scope="module", params=["local", "s3"])
def both(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Lake]]:
    """A DuckDB target and a lake (local, or in a bucket of the session's S3 server, the AWS_*
    variables set while this module's tests run), loaded with the same files: every GLBX
    sample schema, and three days of ES bars, definitions and trades. Only read afterwards."""
    samples = sorted((SAMPLES / "GLBX.MDP3").glob("*.dbn.zst"))
    if not samples:
        pytest.skip(f"no samples at {SAMPLES}")
    root = tmp_path_factory.mktemp(f"lake-{request.param}")
    with pytest.MonkeyPatch.context() as monkeypatch:
        if request.param == "local":
            lake = Lake(f"delta:///{root / 'lake'}", str(root / "lake"))
        else:
            server = request.getfixturevalue("s3_server")
            for name, value in server.env().items():
                monkeypatch.setenv(name, value)
            bucket = server.bucket()
            lake = Lake(f"delta+s3://{bucket}/lake", f"s3://{bucket}/lake")
        paths = [*samples, *write_files(root / "raw").values()]
        duck = f"duckdb:///{root / 'h.duckdb'}"
        for db in (duck, lake.db):  # real processes, as a user loads
            subprocess.run(replay(db, paths, root), check=True)
        yield duck, lake


def _stdout(*args: str) -> str:
    result = histetl(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_query_on_a_lake_writes_the_same_csv_as_on_duckdb_for_every_table(
    both: tuple[str, Lake],
) -> None:
    duck, lake = both
    with duckdb.connect(duck.removeprefix("duckdb:///"), read_only=True) as con:
        tables = [t for (t,) in con.sql("SHOW TABLES").fetchall() if t != "histetl_ledger"]
    assert len(tables) >= 10
    for table in tables:
        args = ("query", "--schema", table, "--format", "csv")
        expected = _stdout(*args, "--db", duck)
        assert expected.count("\n") > 1, table
        assert _stdout(*args, "--db", lake.db) == expected, table


@pytest.mark.parametrize(
    "args",
    [
        ("--schema", "ohlcv-1m", "--symbols", "ES.c.0", "--start", "2023-12-12T14:30",
         "--end", "2023-12-13T02:00", "--format", "csv"),
        ("--schema", "trades", "--symbols", "ES.FUT", "--columns", "ts_event,price,size,symbol",
         "--limit", "50", "--format", "json"),
    ],
)  # fmt: skip
def test_query_on_a_lake_with_symbols_range_and_columns_matches_duckdb(
    both: tuple[str, Lake], args: tuple[str, ...]
) -> None:
    duck, lake = both
    expected = _stdout("query", *args, "--db", duck)
    assert expected.count("\n") > 2
    assert _stdout("query", *args, "--db", lake.db) == expected


def test_verify_on_a_lake_runs_the_same_checks_as_on_duckdb(both: tuple[str, Lake]) -> None:
    duck, lake = both
    on_duck, on_lake = histetl("verify", "--db", duck), histetl("verify", "--db", lake.db)
    assert (on_lake.exit_code, on_duck.exit_code) == (0, 0), on_lake.output
    lines = on_lake.stdout.splitlines()
    assert lines[:-1] == on_duck.stdout.splitlines()[:-1]
    assert lines[-1].startswith(f"verify {lake.db.split('://')[0]}")
    assert "checks passed" in lines[-1]


@pytest.mark.parametrize("command", [["query", "--schema", "trades"], ["verify"]])
def test_reading_a_lake_that_does_not_exist_is_one_line_and_makes_no_folder(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "nolake"
    result = histetl(*command, "--db", f"delta:///{missing}")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"error: --db: no Delta lake at {missing}"
    assert not missing.exists()


def test_query_on_a_lake_does_not_read_the_ledger(tmp_path: Path) -> None:
    """The ledger (every commit's record) is read only by statements that name it: a lake
    whose ledger record is unreadable still answers `query`."""
    lake = Lake(f"delta:///{tmp_path / 'lake'}", str(tmp_path / "lake"))
    subprocess.run(replay(lake.db, trades(tmp_path)[:1], tmp_path), check=True)
    table = lake.table()
    table.create_write_transaction(
        [],
        "append",
        table.schema(),
        ["date"],
        commit_properties=CommitProperties(custom_metadata={LEDGER_KEY: "not a record"}),
    )
    rows = _stdout("query", "--schema", "trades", "--format", "csv", "--db", lake.db)
    assert rows.count("\n") == 2001  # the header and every trade
