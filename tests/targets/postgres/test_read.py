"""`query`, `verify` and `resample` against PostgreSQL and TimescaleDB: the same canonical
columns and exact values as DuckDB (nanoseconds from the `_ns` columns, numeric prices as
decimals), derived bars stored through the PostgreSQL sink."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from histetl.read.query import QueryOptions, query_table
from histetl.read.resample import ResampleOptions, resample
from histetl.read.verify import VerifyOptions, verify
from tests.read.test_query import ES_H4, load, reference_bars, write_files
from tests.read.test_resample import BAR_COLUMNS, aggregate, as_fixed, as_reference


@pytest.fixture
def loaded(db_uri: str, tmp_path: Path) -> tuple[str, dict[str, Path]]:
    paths = write_files(tmp_path / "raw")
    load(db_uri, list(paths.values()), tmp_path / "quarantine")
    return db_uri, paths


def test_query_returns_the_same_canonical_rows_as_duckdb(
    loaded: tuple[str, dict[str, Path]], tmp_path: Path
) -> None:
    uri, paths = loaded
    duck = f"duckdb:///{tmp_path / 'duck.duckdb'}"
    load(duck, list(paths.values()), tmp_path / "quarantine-duck")
    asks = [
        QueryOptions(uri, "ohlcv-1m", ("ES.c.0",), "2023-12-12T20:00", "2023-12-13T03:00"),
        QueryOptions(uri, "ohlcv-1m", ("ESH4",), limit=100),
        QueryOptions(uri, "trades", ("ES.FUT",)),
        QueryOptions(uri, "definition"),
    ]

    for ask in asks:
        ours = query_table(ask)
        theirs = query_table(replace(ask, db=duck))
        assert ours.schema == theirs.schema, ask
        assert ours.equals(theirs), ask
    bars = query_table(asks[1])
    assert bars.schema.field("ts_event").type == pa.timestamp("ns", tz="UTC")
    assert bars.schema.field("open").type == pa.decimal128(19, 9)
    assert set(bars.column("instrument_id").to_pylist()) == {ES_H4}


def test_verify_passes_clean_and_fails_after_a_row_is_deleted(
    loaded: tuple[str, dict[str, Path]],
) -> None:
    uri, _ = loaded

    clean = verify(VerifyOptions(db=uri))
    with psycopg.connect(uri) as conn:
        conn.execute("DELETE FROM ohlcv_1m WHERE ts_event = '2023-12-13 15:07:00+00'")
    broken = verify(VerifyOptions(db=uri))

    assert not clean.failed, clean.text()
    assert {(c.name, c.table) for c in broken.failed} == {
        ("ledger", "ohlcv_1m"),
        ("gaps", "ohlcv_1m"),
    }


def test_resample_stores_derived_bars_through_the_postgres_sink(
    loaded: tuple[str, dict[str, Path]],
) -> None:
    uri, paths = loaded

    report = resample(ResampleOptions(db=uri, interval="15m"))

    derived = query_table(QueryOptions(uri, "ohlcv-15m", columns=BAR_COLUMNS)).to_pylist()
    expected = as_reference(aggregate(reference_bars(paths["ohlcv-1m"]), 15 * 60 * 10**9), 33)
    assert report.bars == len(expected) == 3 * 92
    assert as_fixed(derived) == expected
    assert not verify(VerifyOptions(db=uri, tables=("ohlcv-15m",))).failed
