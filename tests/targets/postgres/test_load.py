"""histetl.targets.postgres.load: one file's COPY into PostgreSQL and TimescaleDB, sending only
the rows the table does not hold yet, chunk by chunk, with exact counts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import psycopg
import pyarrow as pa
import pytest

from histetl.synth import Defects, SynthSpec, write_dbn
from histetl.targets.postgres import load as pg_load
from tests.targets.postgres.test_sink import load, query, snapshot


@pytest.mark.parametrize(
    "held",
    [
        "ts_recv < (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ts_recv) FROM trades)",
        "ts_recv >= (SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY ts_recv) FROM trades)",
        "record_hash % 2 = 0",
    ],
    ids=["first-half-held", "second-half-held", "every-other-row-held"],
)
def test_half_overlapping_file_loads_only_the_missing_rows_with_exact_counts(
    db_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: str
) -> None:
    # small chunks and flushes: the overlap is found chunk by chunk, across batch boundaries
    monkeypatch.setattr(pg_load, "COPY_CHUNK_ROWS", 300)
    monkeypatch.setattr(pg_load, "MISSING_FLUSH_ROWS", 700)
    path = tmp_path / "trades.dbn"
    spec = SynthSpec(schema="trades", records=6000, seed=7, shared_key_trades=40)
    write_dbn(replace(spec, defects=Defects(exact_duplicates=4)), path)
    clean = load(db_uri, [path], tmp_path, batch_size=1000)
    assert not clean.failed, [f.error for f in clean.failed]
    one_load = snapshot(db_uri, ["trades"])
    with psycopg.connect(db_uri) as conn:
        conn.execute(f"DELETE FROM trades WHERE NOT ({held})")  # the table holds part of it
    kept = query(db_uri, "SELECT count(*) FROM trades")[0][0]
    assert 0 < kept < clean.files[0].loaded

    rerun = load(db_uri, [path], tmp_path, batch_size=1000, force=True)

    report = rerun.files[0]
    assert report.status == "loaded", report.error
    assert report.loaded == clean.files[0].loaded - kept
    assert report.loaded + report.duplicates + report.quarantined == report.records
    assert snapshot(db_uri, ["trades"]) == one_load


def test_file_of_other_symbols_for_a_loaded_day_loads_every_row(
    db_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_load, "COPY_CHUNK_ROWS", 500)
    paths = []
    for symbol in ("ES.c.0", "NQ.c.0"):
        paths.append(tmp_path / f"{symbol}.dbn")
        write_dbn(SynthSpec(schema="trades", records=3000, seed=3, symbols=(symbol,)), paths[-1])
    first = load(db_uri, paths[:1], tmp_path)
    second = load(db_uri, paths[1:], tmp_path)
    assert (first.totals["loaded"], second.totals["loaded"]) == (3000, 3000)
    assert second.totals["duplicates"] == 0
    assert query(db_uri, "SELECT count(DISTINCT symbol), count(*) FROM trades") == [(2, 6000)]


@pytest.mark.parametrize(
    "micros",
    # exact while the count fits a double (interval * bigint is float8): until the year 2255
    [0, 1, -1, 1_702_564_200_123_456, 4_102_444_800_000_001, 2**53 - 1],
)
def test_micros_sql_is_the_exact_timestamptz_of_a_microsecond_count(
    pg_uri: str, micros: int
) -> None:
    (back,) = query_params(
        pg_uri,
        f"SELECT (extract(epoch FROM {pg_load._micros('%s')}) * 1e6)::bigint",
        (micros,),
    )

    assert back == (micros,)


def query_params(uri: str, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
    with psycopg.connect(uri) as conn:
        return conn.execute(sql, params).fetchall()


def test_a_chunk_overlaps_the_occupied_range_when_any_time_meets_it() -> None:
    def chunk(*micros: int) -> pa.RecordBatch:
        times = pa.array(micros, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        return pa.record_batch({"ts_recv": times})

    occupied = (100, 200)

    assert pg_load._overlaps(chunk(50, 100), "ts_recv", occupied)  # ends on its first
    assert pg_load._overlaps(chunk(200, 300), "ts_recv", occupied)  # starts on its last
    assert pg_load._overlaps(chunk(50, 300), "ts_recv", occupied)  # spans it
    assert not pg_load._overlaps(chunk(10, 99), "ts_recv", occupied)
    assert not pg_load._overlaps(chunk(201, 250), "ts_recv", occupied)
    assert not pg_load._overlaps(chunk(100, 200), "ts_recv", None)  # the table holds none
