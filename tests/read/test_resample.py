"""Derived bars: N-minute OHLCV from loaded 1-minute bars (Polars group_by_dynamic), stored
like the source bars.

The synthetic generator draws every bar interval independently (its 1h bars are not the
aggregate of its 1m bars), so the 1-hour source bars here are built from the generated 1-minute
file with numpy, written as a real ohlcv-1h DBN file (the generator's header, so the same
symbology) and loaded through the pipeline; 60m derived from 1m must equal them. Other
intervals are checked against the same independent numpy aggregation."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from loguru import logger

from histetl.errors import ConfigError
from histetl.read.query import QueryOptions, query_table
from histetl.read.resample import ResampleOptions, resample, resample_frame
from histetl.read.verify import VerifyOptions, verify
from histetl.synth import SynthSpec, record_dtype, write_dbn
from tests.read.test_query import DAYS, START, histetl, load, reference_bars

BAR_COLUMNS = ("ts_event", "rtype", "publisher_id", "instrument_id", "open", "high", "low")
BAR_COLUMNS += ("close", "volume", "symbol")
MINUTE = 60 * 10**9


@pytest.fixture(autouse=True)
def _reset_logs() -> Iterator[None]:
    yield
    logger.remove()


def aggregate(bars: Any, interval_ns: int) -> Any:
    """Independent reference: numpy OHLCV per instrument and epoch-aligned bucket."""
    bars = bars[np.lexsort((bars["ts_event"], bars["instrument_id"]))]
    bucket = bars["ts_event"].astype(np.int64) // interval_ns * interval_ns
    key_change = (np.diff(bucket) != 0) | (np.diff(bars["instrument_id"].astype(np.int64)) != 0)
    first = np.concatenate([[0], np.flatnonzero(key_change) + 1])
    last = np.concatenate([first[1:] - 1, [len(bars) - 1]])
    out = np.zeros(len(first), dtype=bars.dtype)
    out[["length", "rtype", "publisher_id"]] = bars[["length", "rtype", "publisher_id"]][first]
    out["instrument_id"] = bars["instrument_id"][first]
    out["ts_event"] = bucket[first]
    out["open"] = bars["open"][first]
    out["close"] = bars["close"][last]
    out["high"] = np.maximum.reduceat(bars["high"], first)
    out["low"] = np.minimum.reduceat(bars["low"], first)
    out["volume"] = np.add.reduceat(bars["volume"], first)
    return out[np.lexsort((out["instrument_id"], out["ts_event"]))]


def write_hour_bars(path: Path, minute_spec: SynthSpec, minute_file: Path) -> int:
    """An ohlcv-1h DBN file holding the 1-hour aggregate of `minute_file`'s bars, with the
    header (symbology) the generator writes for the same symbols and dates."""
    write_dbn(replace(minute_spec, schema="ohlcv-1h", records=1), path)
    raw = path.read_bytes()
    header = 8 + struct.unpack_from("<I", raw, 4)[0]
    template = np.frombuffer(raw, dtype=record_dtype("ohlcv-1h"), offset=header, count=1)
    hours = aggregate(reference_bars(minute_file), 60 * MINUTE)
    records = np.repeat(template, len(hours))
    for name in ("publisher_id", "instrument_id", "ts_event", "open", "high", "low", "close"):
        records[name] = hours[name]
    records["volume"] = hours["volume"]
    path.write_bytes(raw[:header] + records.tobytes())
    return len(records)


def rows(uri: str, schema: str) -> list[dict[str, Any]]:
    return query_table(QueryOptions(db=uri, schema=schema, columns=BAR_COLUMNS)).to_pylist()


def as_reference(bars: Any, rtype: int) -> list[tuple[int, ...]]:
    return [
        (
            int(b["ts_event"]),
            rtype,
            int(b["instrument_id"]),
            int(b["open"]),
            int(b["high"]),
            int(b["low"]),
            int(b["close"]),
            int(b["volume"]),
        )
        for b in bars
    ]


def as_fixed(table_rows: list[dict[str, Any]]) -> list[tuple[int, ...]]:
    return [
        (
            int(r["ts_event"].value),
            r["rtype"],
            r["instrument_id"],
            int(r["open"] * 10**9),
            int(r["high"] * 10**9),
            int(r["low"] * 10**9),
            int(r["close"] * 10**9),
            r["volume"],
        )
        for r in table_rows
    ]


@pytest.fixture(scope="module")
def bars_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Sparse 1-minute bars of ES.c.0 and NQ.c.0 (holes everywhere), and 1-hour bars built
    from them, loaded into DuckDB."""
    root = tmp_path_factory.mktemp("resample")
    minute = root / "ohlcv-1m.dbn"
    spec = SynthSpec("ohlcv-1m", 5000, symbols=("ES.c.0", "NQ.c.0"), start=START, days=DAYS)
    write_dbn(spec, minute)
    hour = root / "ohlcv-1h.dbn"
    write_hour_bars(hour, spec, minute)
    uri = f"duckdb:///{root / 'db.duckdb'}"
    load(uri, [minute, hour], root / "quarantine")
    return uri, minute


def test_resample_60m_from_1m_equals_the_source_1h_bars_of_the_same_data(
    bars_db: tuple[str, Path],
) -> None:
    uri, _ = bars_db

    report = resample(ResampleOptions(db=uri, interval="60m"))

    derived, source = rows(uri, "ohlcv-60m"), rows(uri, "ohlcv-1h")
    assert report.bars == len(source) > 100
    assert derived == source  # values, types, symbols and the DBN 1-hour rtype (34)


@pytest.mark.parametrize("interval", ["5m", "15m", "7m"])
def test_resample_matches_an_independent_numpy_aggregation(
    bars_db: tuple[str, Path], interval: str
) -> None:
    uri, minute = bars_db
    n = int(interval[:-1])

    resample(ResampleOptions(db=uri, interval=interval))

    derived = rows(uri, f"ohlcv-{interval}")
    assert as_fixed(derived) == as_reference(aggregate(reference_bars(minute), n * MINUTE), 33)
    assert {r["symbol"] for r in derived} == {"ES.c.0", "NQ.c.0"}


def test_resample_rerun_after_a_source_change_replaces_the_window(
    bars_db: tuple[str, Path], tmp_path: Path
) -> None:
    import shutil

    import duckdb

    uri, _ = bars_db
    path = tmp_path / "copy.duckdb"
    shutil.copy(uri.removeprefix("duckdb:///"), path)
    uri = f"duckdb:///{path}"
    resample(ResampleOptions(db=uri, interval="15m"))
    before = rows(uri, "ohlcv-15m")
    with duckdb.connect(str(path)) as con:  # a late correction of one source bar
        con.execute(
            "UPDATE ohlcv_1m SET volume = volume + 1000 WHERE ts_event = "
            "(SELECT min(ts_event) FROM ohlcv_1m WHERE ts_event >= '2023-12-13 10:00:00+00')"
        )

    again = resample(ResampleOptions(db=uri, interval="15m", start="2023-12-13T10:00"))

    after = rows(uri, "ohlcv-15m")
    assert again.windows == 2
    assert again.replaced == again.bars
    assert len(after) == len(before)
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert len(changed) == 1
    assert changed[0][1]["volume"] == changed[0][0]["volume"] + 1000
    ledger = verify(VerifyOptions(db=uri, tables=("ohlcv-15m",), checks=("ledger", "duplicates")))
    assert not ledger.failed, ledger.text()


def test_resample_frame_labels_buckets_left_and_aggregates_ohlcv() -> None:
    t0 = dt.datetime(2023, 12, 12, 10, 0, tzinfo=dt.UTC)
    minutes = [0, 1, 4, 5, 9, 17]
    frame = pl.DataFrame(
        {
            "ts_event": [t0 + dt.timedelta(minutes=m) for m in minutes],
            "rtype": [33] * 6,
            "publisher_id": [1] * 6,
            "instrument_id": [7] * 6,
            "open": ["1.00", "2.00", "3.00", "4.00", "5.00", "6.00"],
            "high": ["1.50", "2.50", "9.00", "4.50", "5.50", "6.50"],
            "low": ["0.50", "1.50", "2.50", "3.50", "0.25", "5.50"],
            "close": ["1.25", "2.25", "3.25", "4.25", "5.25", "6.25"],
            "volume": [1, 2, 3, 4, 5, 6],
            "record_hash": [0] * 6,
            "symbol": ["X"] * 6,
        },
        schema_overrides={"volume": pl.UInt64, "rtype": pl.UInt8, "publisher_id": pl.UInt16},
    ).with_columns(
        pl.col("ts_event").dt.cast_time_unit("ns"),
        pl.col("instrument_id").cast(pl.UInt32),
        pl.col("open", "high", "low", "close").cast(pl.Decimal(19, 9)),
    )

    bars = resample_frame(frame, 5 * MINUTE)

    d = Decimal
    assert bars.select("open", "high", "low", "close", "volume").rows() == [
        (d("1"), d("9"), d("0.5"), d("3.25"), 6),
        (d("4"), d("5.5"), d("0.25"), d("5.25"), 9),
        (d("6"), d("6.5"), d("5.5"), d("6.25"), 6),
    ]
    assert [t.minute for t in bars["ts_event"]] == [0, 5, 15]  # labelled by the bucket start
    assert bars["record_hash"].n_unique() == 1  # one instrument, one interval: one key per bucket


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--interval", "1h"], "ohlcv_1h is a DBN table"),
        (["--interval", "90s"], "not a multiple (> 1) of the ohlcv-1m interval"),
        (["--interval", "5x"], "cannot read '5x' as a bar interval"),
        (["--interval", "5m", "--interval", "15m", "--table", "bars"], "single --interval"),
        (["--interval", "5m", "--from", "ohlcv-1s"], "nothing loaded for ohlcv-1s"),
    ],
)
def test_resample_bad_input_exits_2_naming_the_culprit(
    bars_db: tuple[str, Path], args: list[str], message: str
) -> None:
    uri, _ = bars_db

    result = histetl("resample", "--db", uri, *args)

    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_resample_cli_reports_what_it_wrote(bars_db: tuple[str, Path], tmp_path: Path) -> None:
    import shutil

    uri, _ = bars_db
    path = tmp_path / "copy.duckdb"
    shutil.copy(uri.removeprefix("duckdb:///"), path)

    result = histetl("resample", "--db", f"duckdb:///{path}", "--interval", "30m")

    assert result.exit_code == 0, result.output
    assert "ohlcv-1m -> ohlcv_30m (30m): 5000 source bars" in result.stdout


def test_resample_interval_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="--interval"):
        resample(ResampleOptions(db="duckdb:///:memory:", interval="0m"))
