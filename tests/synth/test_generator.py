"""histetl.synth.generator: write_dbn writes files databento reads back, with exactly the
defects and shared keys asked for, the same bytes for the same spec."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import pytest
import zstandard

from histetl.synth import (
    BLOCK_RECORDS,
    SUPPORTED_SCHEMAS,
    Defects,
    SynthResult,
    SynthSpec,
    grid_capacity,
    index_field,
    record_class,
    write_dbn,
)
from tests.reference import mismatches
from tests.synth.common import (
    DATABENTO_WARNINGS,
    GRID_S,
    OHLCV,
    QUOTES,
    SHARED_KEY,
    TRADE_LIKE,
    UNDEF_PRICE,
    mapped_ids,
    read,
    small,
)

pytestmark = DATABENTO_WARNINGS


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("schema", SUPPORTED_SCHEMAS)
def test_round_trip_through_databento(tmp: Path, schema: str, version: int) -> None:
    if schema == "ohlcv-eod" and version < 3:
        with pytest.raises(ValueError, match="ohlcv-eod is written as DBN version 3 only"):
            write_dbn(SynthSpec(schema=schema, records=1, version=version), tmp / "eod.dbn")
        return
    spec = SynthSpec(schema=schema, records=small(schema), version=version, seed=version)
    plain = write_dbn(spec, tmp / f"{schema}-v{version}.dbn")
    packed = write_dbn(spec, tmp / f"{schema}-v{version}.dbn.zst")
    assert packed.path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame
    assert (
        zstandard.ZstdDecompressor().decompressobj().decompress(packed.path.read_bytes())
        == plain.path.read_bytes()
    )

    store, arr = read(packed.path)
    assert plain.records == len(arr) == spec.records
    assert store.schema == dbn.Schema.from_str(schema)
    assert store.dataset == "GLBX.MDP3"
    assert store.metadata.version == version
    assert store.metadata.symbols == ["ES.c.0"]
    cls = record_class(schema, version)
    assert (arr["length"] == cls.size_hint // 4).all()
    assert (arr["rtype"] == int(dbn.RType.from_schema(dbn.Schema.from_str(schema)))).all()
    assert (arr["publisher_id"] == 1).all()
    ts = arr[index_field(schema)].astype(np.int64)
    assert (np.diff(ts) >= 0).all()
    assert ts.min() >= plain.metadata_start
    assert ts.max() < plain.metadata_end
    if "ts_recv" in arr.dtype.names:
        assert (arr["ts_recv"] >= arr["ts_event"]).all()

    # the continuous symbol rolls: two intervals, two instruments, both used, all resolved
    (intervals,) = store.metadata.mappings.values()
    assert len(intervals) == 2
    assert {int(i["symbol"]) for i in intervals} == set(np.unique(arr["instrument_id"]).tolist())
    df = store.to_df(price_type="fixed", map_symbols=True)
    assert df["symbol"].notna().all()
    assert set(df["symbol"]) == {"ES.c.0"}


def check_clean_values(schema: str, arr: np.ndarray, skip: np.ndarray) -> None:
    """Invariants of realistic rows (those not in `skip`)."""
    keep = np.ones(len(arr), dtype=bool)
    keep[skip] = False
    rows = arr[keep]
    tick = 250_000_000
    if schema in OHLCV:
        assert (rows["low"] <= np.minimum(rows["open"], rows["close"])).all()
        assert (rows["high"] >= np.maximum(rows["open"], rows["close"])).all()
        assert (rows["volume"] > 0).all()
        assert (
            rows["ts_event"] % {"ohlcv-1s": 10**9, "ohlcv-1m": 60 * 10**9}.get(schema, 1) == 0
        ).all()
        prices = rows["close"]
    elif schema in ("trades", *QUOTES):
        assert (rows["price"] != UNDEF_PRICE).all()
        assert (rows["size"] > 0).all()
        prices = rows["price"]
    else:
        return
    assert (prices % tick == 0).all()
    assert (abs(prices / 1e9 - 4700) < 400).all()
    if schema in QUOTES:
        both = (rows["bid_px_00"] != UNDEF_PRICE) & (rows["ask_px_00"] != UNDEF_PRICE)
        assert (rows["bid_px_00"][both] < rows["ask_px_00"][both]).all()
        for side in ("bid", "ask"):
            present = rows[f"{side}_px_00"] != UNDEF_PRICE
            assert (rows[f"{side}_sz_00"][present] > 0).all()
            assert (rows[f"{side}_sz_00"][~present] == 0).all()


def defect_masks(
    schema: str, arr: np.ndarray, result: SynthResult, ids: set[int]
) -> dict[str, np.ndarray]:
    masks: dict[str, np.ndarray] = {}
    if schema in QUOTES:
        both = (arr["bid_px_00"] != UNDEF_PRICE) & (arr["ask_px_00"] != UNDEF_PRICE)
        masks["crossed_quotes"] = both & (arr["bid_px_00"] > arr["ask_px_00"])
        masks["locked_quotes"] = both & (arr["bid_px_00"] == arr["ask_px_00"])
    if schema in OHLCV:
        masks["high_below_low"] = arr["high"] < arr["low"]
        masks["missing_price"] = arr["close"] == UNDEF_PRICE
    if schema in TRADE_LIKE:
        masks["zero_size"] = arr["size"] == 0
        masks["missing_price"] = arr["price"] == UNDEF_PRICE
    ts = arr[index_field(schema)].astype(np.int64)
    masks["bad_timestamp"] = (ts < result.metadata_start) | (ts >= result.metadata_end)
    raw = arr.view(np.dtype((np.void, arr.dtype.itemsize)))
    masks["exact_duplicates"] = np.concatenate([[False], raw[1:] == raw[:-1]])
    masks["unmapped_instrument"] = ~np.isin(arr["instrument_id"], list(ids))
    return masks


def all_defects(schema: str) -> Defects:
    applicable = {
        "crossed_quotes": schema in QUOTES,
        "locked_quotes": schema in QUOTES,
        "high_below_low": schema in OHLCV,
        "zero_size": schema in TRADE_LIKE,
        "missing_price": schema in TRADE_LIKE or schema in OHLCV,
    }
    n = 1 if schema in ("ohlcv-1d", "ohlcv-eod") else 3
    return Defects(
        **{k: n for k, ok in applicable.items() if ok},
        bad_timestamp=n,
        exact_duplicates=n,
        unmapped_instrument=n,
    )


@pytest.mark.parametrize("version", [1, 3])
@pytest.mark.parametrize("schema", SUPPORTED_SCHEMAS)
def test_defects_are_exactly_where_reported(tmp: Path, schema: str, version: int) -> None:
    if schema == "ohlcv-eod":
        version = 3
    defects = all_defects(schema)
    records = {"ohlcv-1d": 6, "ohlcv-eod": 6, "ohlcv-1h": 60}.get(schema, 400)
    days = {"ohlcv-1d": 8, "ohlcv-eod": 8, "ohlcv-1h": 5}.get(schema, 2)
    spec = SynthSpec(
        schema=schema, records=records, version=version, defects=defects, days=days, seed=7
    )
    result = write_dbn(spec, tmp / f"defects-{schema}-{version}.dbn")
    store, arr = read(result.path)
    assert result.records == len(arr) == records + defects.exact_duplicates
    assert set(result.defect_rows) == set(Defects().counts())

    masks = defect_masks(schema, arr, result, mapped_ids(store))
    for name, count in defects.counts().items():
        rows = result.defect_rows[name]
        assert len(rows) == count, name
        assert (np.diff(rows) > 0).all()
        if name in masks:
            assert np.flatnonzero(masks[name]).tolist() == rows.tolist(), name
    dup = result.defect_rows["exact_duplicates"]
    assert arr[dup].tobytes() == arr[dup - 1].tobytes()

    flagged = np.unique(np.concatenate(list(result.defect_rows.values())))
    check_clean_values(schema, arr, flagged)
    assert (arr["ts_recv"] >= arr["ts_event"]).all() if "ts_recv" in arr.dtype.names else True
    ts = arr[index_field(schema)].astype(np.int64)
    good = ~masks["bad_timestamp"]
    assert (np.diff(ts[good]) >= 0).all()
    if schema in GRID_S:  # bad timestamps stay on the grid
        assert (ts % (GRID_S[schema] * 10**9) == 0).all()

    # only unmapped rows lose their symbol; bad-timestamp rows still resolve
    df = store.to_df(price_type="fixed", map_symbols=True)
    assert np.flatnonzero(df["symbol"].isna().to_numpy()).tolist() == (
        result.defect_rows["unmapped_instrument"].tolist()
    )


@pytest.mark.parametrize("schema", SHARED_KEY)
def test_shared_key_trades(tmp: Path, schema: str) -> None:
    spec = SynthSpec(
        schema=schema, records=500, shared_key_trades=6, defects=Defects(exact_duplicates=2), seed=3
    )
    result = write_dbn(spec, tmp / f"shared-{schema}.dbn")
    _, arr = read(result.path)
    assert result.records == len(arr) == 508
    follow = result.shared_key_rows
    assert len(follow) == 6
    keys = ("instrument_id", "ts_recv", "ts_event", "sequence")
    same = np.ones(len(arr) - 1, dtype=bool)
    for key in keys:
        same &= arr[key][1:] == arr[key][:-1]
    sharing = np.flatnonzero(same) + 1
    assert sorted(sharing.tolist()) == sorted(
        [*follow.tolist(), *result.defect_rows["exact_duplicates"].tolist()]
    )
    prev = arr[follow - 1]
    assert ((arr["price"][follow] != prev["price"]) | (arr["size"][follow] != prev["size"])).all()
    assert (arr["size"][follow] > 0).all()
    assert (arr["price"][follow] != UNDEF_PRICE).all()
    assert (arr["action"][follow] == b"T").all()
    assert (prev["flags"] & dbn.F_LAST == 0).all()
    assert (arr["flags"][follow] & dbn.F_LAST).all()


def test_same_seed_same_bytes_and_chunking_does_not_matter(tmp: Path) -> None:
    n = BLOCK_RECORDS + 5_000
    spec = SynthSpec(
        schema="trades", records=n, defects=Defects(exact_duplicates=5), shared_key_trades=5
    )
    a = write_dbn(spec, tmp / "a.dbn")
    b = write_dbn(spec, tmp / "b.dbn", chunk_records=1_000)
    c = write_dbn(SynthSpec(schema="trades", records=n, seed=1), tmp / "c.dbn")
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.path.read_bytes() != c.path.read_bytes()
    _, arr = read(a.path)
    assert len(arr) == n + 10
    assert (np.diff(arr["ts_recv"].astype(np.int64)) >= 0).all()  # across the block boundary
    assert (np.diff(arr["sequence"].astype(np.int64)) >= 0).all()
    assert set(np.unique(arr["side"]).tolist()) == {b"A", b"B", b"N"}
    assert arr["size"].min() >= 1
    assert arr["size"].max() <= 50
    # the session calendar: nothing during the CME daily halt (22:00-23:00 UTC in winter)
    hour = (arr["ts_recv"] // (3600 * 10**9)) % 24
    assert not (hour == 22).any()


def test_zero_records_writes_a_header_only_file(tmp: Path) -> None:
    result = write_dbn(SynthSpec(schema="mbp-1", records=0), tmp / "empty.dbn.zst")
    store, arr = read(result.path)
    assert result.records == 0
    assert len(arr) == 0
    assert store.metadata.dataset == "GLBX.MDP3"


@pytest.mark.parametrize(
    ("schema", "version"),
    # ohlcv-eod exists in DBN v3 files only (the round-trip test checks the refusal)
    [(s, v) for s in SUPPORTED_SCHEMAS for v in (1, 2, 3) if s != "ohlcv-eod" or v == 3],
)
def test_every_schema_in_every_dbn_version_decodes_equal_to_databento_to_df(
    tmp: Path, schema: str, version: int
) -> None:
    records = {"ohlcv-1h": 40, "ohlcv-1d": 3, "ohlcv-eod": 3}.get(schema, 300)
    spec = SynthSpec(schema=schema, records=records, days=5, seed=5, version=version)
    path = write_dbn(spec, tmp / f"ref-{schema}-v{version}.dbn.zst").path
    assert mismatches(path) == []


@pytest.mark.parametrize(
    ("schema", "days", "capacity"),
    [
        ("ohlcv-1d", 2, 2),  # one bar per instrument and open day
        ("ohlcv-1h", 2, 45),  # Thursday 23 hours (one contract), Friday 22 (the next)
        ("bbo-1m", 2, 2_700),
        ("ohlcv-1d", 3, 2),  # Saturday has no session
    ],
)
def test_grid_capacity_is_every_interval_of_every_session_and_fills_exactly(
    tmp: Path, schema: str, days: int, capacity: int
) -> None:
    spec = SynthSpec(schema=schema, records=0, days=days, start=dt.date(2023, 12, 14))

    assert grid_capacity(spec) == capacity
    full = write_dbn(replace(spec, records=capacity), tmp / f"full-{schema}-{days}.dbn")
    _, arr = read(full.path)
    grid_ns = GRID_S[schema] * 10**9
    slots = arr["ts_event"].astype(np.int64) // grid_ns
    assert np.unique(slots).size == capacity == full.records  # no interval twice, none missing
    with pytest.raises(ValueError, match=f"at most {capacity} bars/samples fit"):
        write_dbn(replace(spec, records=capacity + 1), tmp / "over.dbn")


def test_grid_capacity_of_a_schema_without_a_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="'trades' is not on an interval grid"):
        grid_capacity(SynthSpec(schema="trades", records=0))


def test_chunk_records_below_one_is_refused_before_the_file_is_opened(tmp: Path) -> None:
    with pytest.raises(ValueError, match="chunk_records must be >= 1, got 0"):
        write_dbn(SynthSpec(schema="trades", records=1), tmp / "never.dbn", chunk_records=0)
    assert not (tmp / "never.dbn").exists()
