"""`histetl query`: exactly the loaded rows for a symbol and range, symbols resolved through
the mappings and definitions, exact text and Parquet output, helpful errors (exit 2, no
traceback) and an empty range that says so (exit 0). DuckDB here; PostgreSQL/TimescaleDB in
tests/targets/postgres/test_read.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import databento
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from loguru import logger

from histetl.cli import main
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.read.database import Database
from histetl.read.query import QueryOptions, query_table, split_list
from histetl.synth import SynthSpec, write_dbn
from histetl.times import parse_time

START = dt.date(2023, 12, 12)  # a Tuesday: three full CME Globex days, a roll on the 13th
DAYS = 3
FULL_GRID_1M = 3 * 1380  # ES.c.0 has one contract per day: one bar per open minute
ES_Z3, ES_H4 = 760552, 140352  # instrument ids the generator gives ESZ3 and ESH4
SCALE = 10**9


def write_files(directory: Path, bars_1m: int = FULL_GRID_1M) -> dict[str, Path]:
    """Full-grid 1-minute bars of ES.c.0, ES.FUT definitions and trades."""
    directory.mkdir(parents=True, exist_ok=True)
    specs = {
        "ohlcv-1m": SynthSpec("ohlcv-1m", bars_1m, start=START, days=DAYS, seed=1),
        "definition": SynthSpec(
            "definition", 30, symbols=("ES.FUT",), stype_in="parent", start=START, days=DAYS
        ),
        "trades": SynthSpec(
            "trades", 2000, symbols=("ES.FUT",), stype_in="parent", start=START, days=DAYS, seed=2
        ),
    }
    paths = {}
    for schema, spec in specs.items():
        paths[schema] = directory / f"{schema}.dbn"
        write_dbn(spec, paths[schema])
    return paths


def load(uri: str, paths: list[Path], quarantine: Path) -> None:
    report = Replayer(ReplayOptions(db=uri, quarantine_dir=quarantine)).run(paths)
    assert not report.failed, report.table()
    assert report.totals["quarantined"] == 0


def reference_bars(path: Path) -> Any:
    """databento's own decode of a bar file: numpy records with fixed-point prices."""
    return databento.DBNStore.from_bytes(path.read_bytes()).to_ndarray()


def histetl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def _reset_logs() -> Iterator[None]:
    yield
    logger.remove()  # the CLI configures loguru sinks; keep them from leaking between tests


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Path]]:
    root = tmp_path_factory.mktemp("query")
    paths = write_files(root / "raw")
    uri = f"duckdb:///{root / 'db.duckdb'}"
    load(uri, list(paths.values()), root / "quarantine")
    return uri, paths


def _ns(value: Any) -> int:
    return int(value.value) if hasattr(value, "value") else int(value.timestamp() * SCALE)


# -- exactly the loaded rows ---------------------------------------------------------------------


def test_query_continuous_symbol_and_range_returns_exactly_the_loaded_rows(
    loaded: tuple[str, dict[str, Path]],
) -> None:
    uri, paths = loaded
    start, end = "2023-12-12T14:30", "2023-12-13T02:00"

    table = query_table(
        QueryOptions(db=uri, schema="ohlcv-1m", symbols=("ES.c.0",), start=start, end=end)
    )

    ref = reference_bars(paths["ohlcv-1m"])
    lo, hi = parse_time(start, "start"), parse_time(end, "end")
    ref = ref[(ref["ts_event"] >= lo) & (ref["ts_event"] < hi)]
    assert table.num_rows == len(ref) == 450 + 180  # 14:30-22:00, 23:00-02:00 (halt 22-23)
    assert table.schema.field("ts_event").type == pa.timestamp("ns", tz="UTC")
    assert table.schema.field("open").type == pa.decimal128(19, 9)
    assert table.schema.field("volume").type == pa.uint64()
    ours = [
        (
            _ns(r["ts_event"]),
            r["instrument_id"],
            int(r["open"] * SCALE),
            int(r["high"] * SCALE),
            int(r["low"] * SCALE),
            int(r["close"] * SCALE),
            r["volume"],
            r["symbol"],
        )
        for r in table.to_pylist()
    ]
    theirs = [
        (
            int(r["ts_event"]),
            int(r["instrument_id"]),
            int(r["open"]),
            int(r["high"]),
            int(r["low"]),
            int(r["close"]),
            int(r["volume"]),
            "ES.c.0",
        )
        for r in ref
    ]
    assert ours == theirs
    assert {r["instrument_id"] for r in table.to_pylist()} == {ES_Z3, ES_H4}  # across the roll


def test_query_raw_symbol_resolves_through_definitions_to_its_instrument(
    loaded: tuple[str, dict[str, Path]],
) -> None:
    uri, _ = loaded

    table = query_table(QueryOptions(db=uri, schema="ohlcv-1m", symbols=("ESH4",)))

    rows = table.to_pylist()
    assert len(rows) == 2 * 1380  # ESH4 is ES.c.0 from the roll on
    assert {r["instrument_id"] for r in rows} == {ES_H4}
    assert {r["symbol"] for r in rows} == {"ES.c.0"}  # as it was loaded


def test_query_parent_symbol_matches_every_contract_and_spread(
    loaded: tuple[str, dict[str, Path]],
) -> None:
    uri, _ = loaded

    parent = query_table(QueryOptions(db=uri, schema="trades", symbols=("ES.FUT",)))
    raw = query_table(
        QueryOptions(db=uri, schema="trades", symbols=split_list(["ESZ3,ESH4", "ESZ3-ESH4"]))
    )

    assert parent.num_rows == raw.num_rows == 2000
    assert set(parent.column("symbol").to_pylist()) == {"ESZ3", "ESH4", "ESZ3-ESH4"}
    assert parent.equals(raw)


def test_query_columns_and_limit_keep_order_and_time_ordering(
    loaded: tuple[str, dict[str, Path]],
) -> None:
    uri, _ = loaded

    table = query_table(
        QueryOptions(db=uri, schema="trades", columns=("price", "ts_recv"), limit=5)
    )

    assert table.column_names == ["price", "ts_recv"]
    stamps = table.column("ts_recv").to_pylist()
    assert table.num_rows == 5
    assert stamps == sorted(stamps)


def test_query_rows_stream_in_bounded_batches(loaded: tuple[str, dict[str, Path]]) -> None:
    uri, _ = loaded

    with Database.open(uri) as db:
        sizes = [b.num_rows for b in db.read("ohlcv_1m", ["ts_event"], batch_rows=1000)]

    assert sum(sizes) == FULL_GRID_1M
    assert len(sizes) > 1
    assert max(sizes) < 1000 + 2048  # at most one of DuckDB's vectors past the bound


# -- output formats -------------------------------------------------------------------------------


def test_query_csv_json_and_parquet_keep_nanoseconds_and_prices_exact(
    loaded: tuple[str, dict[str, Path]], tmp_path: Path
) -> None:
    uri, _ = loaded
    args = ["query", "--db", uri, "--schema", "trades", "--symbols", "ESH4", "--limit", "50"]
    expected = query_table(QueryOptions(db=uri, schema="trades", symbols=("ESH4",), limit=50))
    ts = [_ns(v) for v in expected.column("ts_recv").to_pylist()]
    prices = [str(v) for v in expected.column("price").to_pylist()]
    assert any(t % 1000 for t in ts)  # real nanoseconds, not microseconds

    as_csv = histetl(*args, "--format", "csv")
    as_json = histetl(*args, "--format", "json")
    as_parquet = histetl(*args, "--format", "parquet", "-o", tmp_path / "out.parquet")

    assert as_csv.exit_code == as_json.exit_code == as_parquet.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    for got in (rows, lines):
        assert [parse_time(r["ts_recv"], "ts") for r in got] == ts
        assert [r["price"] for r in got] == prices  # fixed point, every digit
        assert [Decimal(r["price"]) for r in got] == expected.column("price").to_pylist()
    assert pq.read_table(tmp_path / "out.parquet").equals(expected)
    assert "wrote 50 rows" in as_parquet.stderr


def test_query_table_format_prints_aligned_columns(loaded: tuple[str, dict[str, Path]]) -> None:
    uri, _ = loaded

    result = histetl(
        "query", "--db", uri, "--schema", "ohlcv-1m", "--symbols", "ES.c.0",
        "--columns", "ts_event,close", "--columns", "symbol", "--limit", "2",
    )  # fmt: skip

    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "ts_event                        close           symbol",
        "2023-12-12T00:00:00.000000000Z  4698.750000000  ES.c.0",
        "2023-12-12T00:01:00.000000000Z  4700.250000000  ES.c.0",
    ]


# -- errors and empty results ---------------------------------------------------------------------


def test_query_when_range_is_empty_says_so_and_exits_0(loaded: tuple[str, dict[str, Path]]) -> None:
    uri, _ = loaded

    result = histetl(
        "query", "--db", uri, "--schema", "ohlcv-1m", "--symbols", "ES.c.0",
        "--start", "2024-01-01", "--end", "2024-01-02", "--format", "csv",
    )  # fmt: skip

    assert result.exit_code == 0
    assert result.stdout.startswith("ts_event,rtype,")  # a header, no rows
    assert result.stdout.count("\n") == 1
    assert "no rows for ES.c.0 in ohlcv_1m from 2024-01-01T00:00:00Z" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schema", "ohlcv-1m", "--symbols", "ES.c.1"], "unknown symbol in ohlcv_1m: ES.c.1"),
        (["--schema", "ohlcv-1m", "--symbols", "ESH5"], "close matches: ESH4"),
        (["--schema", "ohlcv-1m", "--symbols", "ES.c.0,NQ.c.0"], "NQ.c.0"),
        (["--schema", "tradez"], "unknown schema 'tradez' (close matches: trades)"),
        (["--schema", "ohlcv-5m"], "nothing loaded for schema 'ohlcv-5m'"),
        (["--schema", "trades", "--columns", "prise"], "unknown column in trades: prise"),
        (["--schema", "trades", "--start", "yesterday"], "--start: cannot read 'yesterday'"),
        (["--schema", "trades", "--start", "2023-12-13", "--end", "2023-12-12"], "not before"),
        (["--schema", "trades", "--format", "parquet"], "parquet needs an output file"),
    ],
)
def test_query_bad_input_exits_2_naming_the_culprit(
    loaded: tuple[str, dict[str, Path]], args: list[str], message: str
) -> None:
    uri, _ = loaded

    result = histetl("query", "--db", uri, *args)

    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_query_when_database_is_missing_exits_2(tmp_path: Path) -> None:
    result = histetl("query", "--db", f"duckdb:///{tmp_path / 'none.duckdb'}", "--schema", "trades")

    assert result.exit_code == 2
    assert "no DuckDB database at" in result.stderr
    assert not (tmp_path / "none.duckdb").exists()
