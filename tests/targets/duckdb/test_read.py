"""histetl.targets.duckdb.read: opening a DuckDB file for reading (missing, locked), its
columns in the canonical Arrow spelling, and time ranges exact to the nanosecond."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from histetl.errors import ConfigError, LoadError
from histetl.targets.base import DbColumn
from histetl.targets.duckdb.read import DuckDBReader, duckdb_column, open_duckdb

T = 1_702_564_200_000_000_000  # 2023-12-14 14:30:00 UTC


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "r.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            f"CREATE TABLE ticks AS SELECT make_timestamp_ns(CAST({T} + d AS BIGINT))"
            "::TIMESTAMPTZ_NS AS ts, d AS n FROM range(-2, 3) r(d)"
        )
    return path


@pytest.fixture
def reader(path: Path) -> Iterator[DuckDBReader]:
    opened = open_duckdb(f"duckdb:///{path}")
    yield opened
    opened.close()


def test_a_missing_file_is_a_config_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "none.duckdb"

    with pytest.raises(ConfigError) as caught:
        open_duckdb(f"duckdb:///{missing}")

    assert caught.value.what == f"no DuckDB database at {missing}"
    assert caught.value.where == "--db"
    assert "histetl replay" in (caught.value.hint or "")
    assert not missing.exists()


def test_a_file_another_process_writes_is_one_load_error(path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('ready', flush=True); "
            "sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        with pytest.raises(LoadError) as caught:
            open_duckdb(f"duckdb:///{path}")
    finally:
        holder.communicate("", timeout=30)

    assert caught.value.what.startswith("cannot open DuckDB database: ")
    assert "\n" not in caught.value.what
    assert caught.value.where == str(path)
    assert caught.value.hint == "another histetl process may be writing to it; try again after it"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"hello\n", "exists, but it is not a valid DuckDB database file"),
        (b"", "exists, but it is not a valid DuckDB database file"),
        (None, "Could not read enough bytes from file"),
    ],
    ids=["text", "empty", "cut-short"],
)
def test_a_file_that_is_not_a_whole_duckdb_database_says_so_without_blaming_a_writer(
    path: Path, tmp_path: Path, content: bytes | None, reason: str
) -> None:
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(path.read_bytes()[:20_000] if content is None else content)
    with pytest.raises(LoadError) as caught:
        open_duckdb(f"duckdb:///{bad}")
    assert caught.value.what.startswith("cannot open DuckDB database: ")
    assert reason in caught.value.what
    assert "Error: " not in caught.value.what  # the driver's class prefixes are dropped
    assert caught.value.hint == "check the path, its permissions, and that it is a DuckDB file"


@pytest.mark.parametrize(
    ("type_", "canonical"),
    [
        (pa.timestamp("ns", tz="Etc/UTC"), pa.timestamp("ns", tz="UTC")),
        (pa.timestamp("us", tz="Etc/UTC"), pa.timestamp("us", tz="UTC")),
        (pa.timestamp("ns"), pa.timestamp("ns")),
        (pa.string_view(), pa.string()),
        (pa.large_string(), pa.string()),
        (pa.decimal128(19, 9), pa.decimal128(19, 9)),
        (pa.uint64(), pa.uint64()),
    ],
)
def test_columns_come_in_the_canonical_spelling(type_: pa.DataType, canonical: pa.DataType) -> None:
    assert duckdb_column(pa.field('we"ird', type_)) == DbColumn('we"ird', canonical, '"we""ird"')


def test_time_range_and_time_ns_are_exact_to_the_nanosecond(reader: DuckDBReader) -> None:
    where = " AND ".join(reader.time_range("ts", T - 1, T + 2))
    order = reader.time_order("ts")

    rows = reader.stream(
        f"SELECT {reader.time_ns('ts')} AS ns, n FROM ticks WHERE {where} ORDER BY {order}"
    ).read_all()

    assert rows.column("ns").to_pylist() == [T - 1, T, T + 1]
    assert rows.column("n").to_pylist() == [-1, 0, 1]
    assert reader.time_range("ts", None, None) == []
    assert len(reader.time_range("ts", T, None)) == 1


def test_delete_counts_the_rows_it_removed(reader: DuckDBReader) -> None:
    removed = reader.delete("ticks", reader.time_range("ts", T, None))

    assert removed == 3
    left = reader.stream("SELECT n FROM ticks ORDER BY n").read_all()
    assert left.column("n").to_pylist() == [-2, -1]
