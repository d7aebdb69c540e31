"""histetl.read.database: `Database` presents DuckDB and PostgreSQL tables alike, in canonical
Arrow types (ns timestamps from PostgreSQL's X_ns, decimal prices, unsigned integers), read in
bounded batches with the target's own time conditions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.read.database import Database, spec_for
from histetl.schemas import table_spec
from histetl.synth import SynthSpec, write_dbn
from tests.support.pgserver import PgServer, fresh_schema

RECORDS = 3_000


@pytest.fixture(scope="module")
def trades_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("database") / "trades.dbn"
    write_dbn(SynthSpec("trades", RECORDS, seed=6), path)
    return path


@pytest.fixture(params=["duckdb", "postgres"])
def uri(request: pytest.FixtureRequest, tmp_path: Path, trades_file: Path) -> Iterator[str]:
    def load(db: str) -> str:
        options = ReplayOptions(db=db, quarantine_dir=tmp_path / "q")
        assert Replayer(options).run([trades_file]).totals["loaded"] == RECORDS
        return db

    if request.param == "duckdb":
        yield load(f"duckdb:///{tmp_path / 'd.duckdb'}")
        return
    server: PgServer = request.getfixturevalue("pg_server")
    with fresh_schema(server.uri) as (pg, _schema):
        yield load(pg)


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("trades", "trades"),
        ("mbp_1", "mbp-1"),
        ("ohlcv-1m", "ohlcv-1m"),
        ("ohlcv_5m", "ohlcv-1m"),  # derived bars: the 1-minute layout
        ("ohlcv-2h", "ohlcv-1m"),
        ("ohlcv_1x", None),
        ("histetl_ledger", None),
    ],
)
def test_spec_for_schema_and_table_names(name: str, schema: str | None) -> None:
    spec = spec_for(name)

    assert (spec.schema if spec else None) == schema


def test_columns_are_the_canonical_ones_in_table_order(uri: str) -> None:
    with Database.open(uri) as db:
        columns = db.columns("trades")

    canonical = table_spec("trades").arrow_schema
    assert [c.name for c in columns] == canonical.names  # PostgreSQL's X_ns folded away
    assert [c.type for c in columns] == canonical.types
    assert dict(zip(canonical.names, canonical.types, strict=True))["ts_recv"] == pa.timestamp(
        "ns", tz="UTC"
    )


def test_catalog_tables_rows_and_has_rows(uri: str) -> None:
    with Database.open(uri) as db:
        tables = db.tables()
        assert {"trades", "histetl_ledger"} <= tables
        assert db.has_rows("trades")
        assert not db.has_rows("mbp_1")  # not a table here
        assert db.rows("SELECT count(*) FROM trades") == [(RECORDS,)]


def test_read_chooses_columns_filters_orders_limits_and_batches(uri: str) -> None:
    with Database.open(uri) as db:
        everything = db.read("trades", order_by=db.time_order("ts_recv")).read_all()
        ts = everything.column("ts_recv").cast(pa.int64()).to_pylist()
        lo, hi = ts[100], ts[2_000]
        stream = db.read(
            "trades",
            columns=["size", "ts_recv", "symbol"],
            where=db.time_range("ts_recv", lo, hi),
            order_by=db.time_order("ts_recv"),
            limit=1_500,
            batch_rows=400,
        )
        batches = list(stream)

    assert everything.num_rows == RECORDS
    assert ts == sorted(ts)
    assert stream.schema.names == ["size", "ts_recv", "symbol"]
    assert stream.schema.field("size").type == pa.uint32()
    rows = pa.Table.from_batches(batches)
    got = rows.column("ts_recv").cast(pa.int64()).to_pylist()
    first = ts.index(lo)
    assert got == ts[first : first + 1_500]  # [lo, hi) holds more than the limit
    # batches of at least batch_rows, except the last (DuckDB streams 2048-row vectors)
    assert all(b.num_rows >= 400 for b in batches[:-1])
    assert sum(b.num_rows for b in batches) == 1_500


def test_time_ns_is_exact_nanoseconds(uri: str) -> None:
    with Database.open(uri) as db:
        order = db.time_order("ts_recv")
        exact = [
            r[0] for r in db.rows(f"SELECT {db.time_ns('ts_recv')} FROM trades ORDER BY {order}")
        ]
        read = db.read("trades", ["ts_recv"], order_by=order).read_all()

    assert exact == read.column(0).cast(pa.int64()).to_pylist()
    assert sum(ns % 1_000 != 0 for ns in exact) > RECORDS // 2  # sub-microsecond digits kept
