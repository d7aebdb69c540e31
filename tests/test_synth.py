"""histetl.synth writes DBN files databento reads back, with exactly the defects asked for."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any

import databento
import databento_dbn as dbn
import duckdb
import numpy as np
import polars as pl
import pytest
import zstandard

from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.source.files import expand_paths
from histetl.synth import (
    BLOCK_RECORDS,
    SUPPORTED_SCHEMAS,
    Defects,
    Shapes,
    SynthResult,
    SynthSpec,
    index_field,
    record_class,
    record_dtype,
    write_dbn,
)
from tests.reference import mismatches

# databento's DataFrame path trips a pandas deprecation warning, and DBNStore.from_file leaves
# its file handles to the garbage collector; neither is ours to fix.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The inplace keyword:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO:pytest.PytestUnraisableExceptionWarning"
    ),
]

UNDEF_PRICE = dbn.UNDEF_PRICE
UNDEF_TS = dbn.UNDEF_TIMESTAMP
OHLCV = ("ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "ohlcv-eod")
BBO = ("bbo-1s", "bbo-1m", "cbbo-1s", "cbbo-1m")
BOOK = ("tbbo", "tcbbo", "mbp-1", "mbp-10", "cmbp-1")
QUOTES = (*BOOK, *BBO)
TRADE_LIKE = ("trades", *BOOK)
SHARED_KEY = ("trades", "tbbo", "mbp-1")
GRID_S = {"ohlcv-1s": 1, "ohlcv-1m": 60, "ohlcv-1h": 3600, "ohlcv-1d": 86400, "ohlcv-eod": 86400}
GRID_S |= {"bbo-1s": 1, "bbo-1m": 60, "cbbo-1s": 1, "cbbo-1m": 60}
# small record counts that fit every schema's grid in the default two days
SMALL = {"ohlcv-1h": 40, "ohlcv-1d": 2, "ohlcv-eod": 2}


def small(schema: str) -> int:
    return SMALL.get(schema, 300)


def read(path: Path) -> tuple[Any, np.ndarray]:
    store = databento.DBNStore.from_file(path)
    return store, store.to_ndarray()


def mapped_ids(store: Any) -> set[int]:
    return {int(i["symbol"]) for ivs in store.metadata.mappings.values() for i in ivs}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth")


def test_layouts_come_from_databento_dbn() -> None:
    for schema in SUPPORTED_SCHEMAS:
        for version in (1, 2, 3):
            cls = record_class(schema, version)
            assert record_dtype(schema, version).itemsize == cls.size_hint
    assert record_class("statistics", 1).__name__ == "StatMsgV1"
    assert record_dtype("statistics", 2)["quantity"] == np.dtype("i4")
    assert record_dtype("statistics", 3)["quantity"] == np.dtype("i8")
    assert record_class("definition", 2).__name__ == "InstrumentDefMsgV2"
    assert index_field("ohlcv-1m") == "ts_event"
    assert index_field("mbp-1") == "ts_recv"


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


def test_sentinels_and_realism_per_schema(tmp: Path) -> None:
    # empty book sides
    for schema in QUOTES:
        _, arr = read(
            write_dbn(SynthSpec(schema=schema, records=300), tmp / f"s-{schema}.dbn").path
        )
        empty_bid = arr["bid_px_00"] == UNDEF_PRICE
        empty_ask = arr["ask_px_00"] == UNDEF_PRICE
        assert empty_bid.any(), schema
        assert empty_ask.any(), schema
        assert (arr["bid_sz_00"][empty_bid] == 0).all()
        assert (arr["ask_sz_00"][empty_ask] == 0).all()
    # statistics: the unused field holds the version's sentinel
    for version, qty_max in ((1, np.iinfo(np.int32).max), (3, dbn.UNDEF_STAT_QUANTITY)):
        spec = SynthSpec(schema="statistics", records=400, version=version)
        _, arr = read(write_dbn(spec, tmp / f"stats-{version}.dbn").path)
        qty_type = np.isin(arr["stat_type"], [6, 9])
        assert qty_type.any()
        assert (~qty_type).any()
        assert (arr["price"][qty_type] == UNDEF_PRICE).all()
        assert (arr["quantity"][qty_type] < qty_max).all()
        paired = arr["stat_type"] == 2  # indicative opening price: price and quantity
        assert paired.any()
        assert (arr["quantity"][paired] < qty_max).all()
        assert (arr["quantity"][~qty_type & ~paired] == qty_max).all()
        assert (arr["price"][~qty_type] != UNDEF_PRICE).all()
        settle = arr["stat_type"] == 3
        assert (arr["ts_ref"][settle] != UNDEF_TS).all()
        assert (arr["ts_ref"][~settle] == UNDEF_TS).all()
        assert len(np.unique(arr["stat_type"])) >= 6
    # status
    _, arr = read(write_dbn(SynthSpec(schema="status", records=60), tmp / "status.dbn").path)
    assert set(np.unique(arr["is_trading"]).tolist()) == {b"Y", b"N", b"~"}
    assert {1, 7, 8, 12} <= set(np.unique(arr["action"]).tolist())
    # imbalance, Nasdaq style
    spec = SynthSpec(
        schema="imbalance",
        records=200,
        dataset="XNAS.ITCH",
        symbols=("AAPL", "MSFT"),
        stype_in="raw_symbol",
    )
    store, arr = read(write_dbn(spec, tmp / "imbalance.dbn").path)
    assert (arr["publisher_id"] == 2).all()
    assert (arr["ssr_filling_price"] == UNDEF_PRICE).all()
    assert (arr["market_imbalance_qty"] == dbn.UNDEF_ORDER_SIZE).all()
    assert set(np.unique(arr["auction_type"]).tolist()) == {b"O", b"C"}
    assert (arr["auction_time"] >= arr["ts_recv"]).all()
    local_minute = (arr["ts_recv"].astype(np.int64) // (60 * 10**9) - 5 * 60) % 1440
    assert (
        ((local_minute >= 565) & (local_minute < 570))
        | ((local_minute >= 950) & (local_minute < 960))
    ).all()
    df = store.to_df(map_symbols=True)
    assert set(df["symbol"]) == {"AAPL", "MSFT"}


def test_definitions(tmp: Path) -> None:
    spec = SynthSpec(schema="definition", records=30, symbols=("ES.FUT",), stype_in="parent")
    store, arr = read(write_dbn(spec, tmp / "def-parent.dbn").path)
    raw = {r.decode() for r in np.unique(arr["raw_symbol"])}
    assert raw == {"ESZ3", "ESH4", "ESZ3-ESH4"}
    assert set(store.metadata.mappings) == raw  # parent requests map by raw symbol
    assert set(store.to_df(map_symbols=True)["symbol"]) == raw
    spread = arr[arr["instrument_class"] == b"S"]
    assert len(spread)
    assert (spread["raw_symbol"] == b"ESZ3-ESH4").all()
    assert set(spread["leg_index"].tolist()) == {0, 1}
    assert (spread["leg_count"] == 2).all()
    outright = arr[arr["instrument_class"] == b"F"]
    assert (outright["expiration"] > outright["activation"]).all()
    assert (outright["expiration"] != UNDEF_TS).all()
    assert (outright["min_price_increment"] == 250_000_000).all()
    assert (outright["contract_multiplier"] == np.iinfo(np.int32).max).all()
    assert (outright["leg_price"] == UNDEF_PRICE).all()

    spec = SynthSpec(
        schema="definition",
        records=10,
        dataset="XNAS.ITCH",
        symbols=("AAPL",),
        stype_in="raw_symbol",
        version=2,
    )
    _, arr = read(write_dbn(spec, tmp / "def-equity.dbn").path)
    assert (arr["instrument_class"] == b"K").all()
    assert (arr["raw_symbol"] == b"AAPL").all()
    assert (arr["expiration"] == UNDEF_TS).all()
    assert (arr["activation"] == UNDEF_TS).all()
    assert (arr["min_price_increment"] == 10_000_000).all()
    assert (arr["strike_price"] == UNDEF_PRICE).all()


def test_several_symbols_interleave_and_roll_together(tmp: Path) -> None:
    spec = SynthSpec(schema="trades", records=2_000, symbols=("ES.c.0", "ES.c.1", "NQ.c.0"), days=4)
    store, arr = read(write_dbn(spec, tmp / "multi.dbn").path)
    mappings = store.metadata.mappings
    assert [len(mappings[s]) for s in spec.symbols] == [2, 2, 2]
    # ES.c.1 before the roll is ES.c.0 after it: the same instrument
    assert mappings["ES.c.0"][1]["symbol"] == mappings["ES.c.1"][0]["symbol"]
    assert mappings["ES.c.0"][1]["start_date"] == mappings["ES.c.1"][1]["start_date"]
    df = store.to_df(map_symbols=True)
    assert df["symbol"].notna().all()
    assert set(df["symbol"]) == set(spec.symbols)
    assert len(np.unique(arr["instrument_id"])) == 5
    nq = df[df["symbol"] == "NQ.c.0"]
    assert abs(nq["price"].median() - 16700) < 1000


def test_start_date_and_raw_symbol_future(tmp: Path) -> None:
    spec = SynthSpec(
        schema="ohlcv-1m",
        records=100,
        symbols=("ESH4",),
        stype_in="raw_symbol",
        start=dt.date(2024, 1, 8),
        days=1,
    )
    result = write_dbn(spec, tmp / "raw.dbn")
    store, arr = read(result.path)
    assert result.metadata_start == 1_704_672_000 * 10**9
    assert store.metadata.mappings["ESH4"][0]["start_date"] == dt.date(2024, 1, 8)
    assert len(np.unique(arr["instrument_id"])) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            SynthSpec(schema="trades", records=10, defects=Defects(high_below_low=1)),
            "high_below_low",
        ),
        (
            SynthSpec(schema="ohlcv-1m", records=10, defects=Defects(crossed_quotes=1)),
            "crossed_quotes",
        ),
        (SynthSpec(schema="status", records=10, defects=Defects(zero_size=1)), "zero_size"),
        (
            SynthSpec(schema="statistics", records=10, defects=Defects(missing_price=1)),
            "missing_price",
        ),
        (SynthSpec(schema="ohlcv-1s", records=10, shared_key_trades=1), "shared_key_trades"),
        (SynthSpec(schema="ohlcv-1d", records=3), "at most 2"),
        (SynthSpec(schema="trades", records=2, defects=Defects(zero_size=3)), "only 2 records"),
        (SynthSpec(schema="mbp-20", records=1), "unsupported schema"),
        (SynthSpec(schema="trades", records=1, version=4), "version"),
        (SynthSpec(schema="trades", records=1, symbols=("ESH4",)), "continuous"),
        (SynthSpec(schema="trades", records=1, symbols=("ES.c.0",), stype_in="parent"), "parent"),
    ],
)
def test_invalid_specs_raise(tmp: Path, spec: SynthSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_dbn(spec, tmp / "invalid.dbn")


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


def replay_one(tmp_path: Path, path: Path) -> Any:
    options = ReplayOptions(
        db=f"duckdb:///{tmp_path / 'shapes.duckdb'}", quarantine_dir=tmp_path / "quarantine"
    )
    (file,) = Replayer(options).run(expand_paths([path])).files
    return file


def stored(tmp_path: Path, table: str) -> pl.DataFrame:
    with duckdb.connect(str(tmp_path / "shapes.duckdb"), read_only=True) as con:
        frame = pl.from_arrow(con.sql(f"SELECT * FROM {table}").to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


# Real-data classes that were once quarantined: (schema, dataset, symbols, stype_in, shapes)
REAL_SHAPES = {
    "bbo_1s_no_last_trade": ("bbo-1s", "GLBX.MDP3", ("ES.c.0",), "continuous"),
    "bbo_1m_no_last_trade_equities": ("bbo-1m", "XNAS.ITCH", ("AAPL", "MSFT"), "raw_symbol"),
    "cbbo_1s_no_last_trade_options": (
        "cbbo-1s",
        "OPRA.PILLAR",
        ("AAPL  240119C00190000",),
        "raw_symbol",
    ),
    "cbbo_1m_no_last_trade_consolidated": ("cbbo-1m", "EQUS.SUMMARY", ("NVDA",), "raw_symbol"),
    "mbp_1_options_sideless_adds_and_clears": (
        "mbp-1",
        "OPRA.PILLAR",
        ("SPY   240119P00470000",),
        "raw_symbol",
    ),
    "mbp_10_sideless_updates_and_clears": ("mbp-10", "XNAS.ITCH", ("AAPL",), "raw_symbol"),
    "cmbp_1_consolidated_sideless_updates": ("cmbp-1", "EQUS.PLUS", ("TSLA",), "raw_symbol"),
    "mbo_clears_ice": ("mbo", "IFEU.IMPACT", ("BRNH4",), "raw_symbol"),
}
SHAPE_COUNTS = {
    "bbo": Shapes(no_last_trade=7),
    "cbbo": Shapes(no_last_trade=7),
    "mbp": Shapes(sideless_book_updates=9, book_clears=2),
    "cmbp": Shapes(sideless_book_updates=9, book_clears=2),
    "mbo": Shapes(book_clears=3),
}


@pytest.mark.parametrize("case", sorted(REAL_SHAPES))
def test_replay_of_real_data_shape_quarantines_nothing(tmp_path: Path, case: str) -> None:
    schema, dataset, symbols, stype_in = REAL_SHAPES[case]
    shapes = SHAPE_COUNTS[schema.split("-")[0]]
    spec = SynthSpec(
        schema=schema,
        records=600,
        dataset=dataset,
        symbols=symbols,
        stype_in=stype_in,
        seed=4,
        shapes=shapes,
    )
    result = write_dbn(spec, tmp_path / f"{case}.dbn.zst")
    assert mismatches(result.path) == []  # still what databento's own reader sees
    file = replay_one(tmp_path, result.path)
    assert (file.status, file.quarantined, file.duplicates) == ("loaded", 0, 0)
    assert file.loaded == file.records == 600
    assert file.rules == {}
    frame = stored(tmp_path, schema.replace("-", "_"))
    for name, rows in result.shape_rows.items():
        assert len(rows) == shapes.counts()[name]
    if shapes.no_last_trade:
        assert frame.filter(pl.col("ts_event").is_null()).height == shapes.no_last_trade
    sideless = frame.filter((pl.col("side") == "N") & pl.col("price").is_null())
    assert sideless.height == sum(shapes.counts().values())
    if shapes.book_clears:
        assert frame.filter(pl.col("action") == "R").height == shapes.book_clears


@pytest.mark.parametrize("version", [1, 2, 3])
def test_replay_of_file_without_symbology_loads_every_record_with_symbol_null(
    tmp_path: Path, version: int
) -> None:
    spec = SynthSpec(schema="statistics", records=200, version=version, symbology=False, seed=2)
    result = write_dbn(spec, tmp_path / f"nosym-v{version}.dbn")
    store, _ = read(result.path)
    assert not store.metadata.mappings
    assert mismatches(result.path) == []
    file = replay_one(tmp_path, result.path)
    assert (file.status, file.loaded, file.quarantined) == ("loaded", 200, 0)
    assert file.rules == {"symbol_present": 200}  # counted, a warning
    assert stored(tmp_path, "statistics")["symbol"].null_count() == 200


def test_replay_of_shaped_file_still_quarantines_exactly_the_injected_defects(
    tmp_path: Path,
) -> None:
    spec = SynthSpec(
        schema="mbp-1",
        records=800,
        dataset="OPRA.PILLAR",
        symbols=("AAPL  240119C00190000",),
        stype_in="raw_symbol",
        seed=8,
        shapes=Shapes(sideless_book_updates=20, book_clears=4),
        defects=Defects(missing_price=6, zero_size=5, bad_timestamp=2, crossed_quotes=3),
    )
    result = write_dbn(spec, tmp_path / "shaped.dbn.zst")
    file = replay_one(tmp_path, result.path)
    bad = {
        int(r)
        for name in ("missing_price", "zero_size", "bad_timestamp")
        for r in result.defect_rows[name]
    }
    assert file.quarantined == len(bad) == 13
    assert file.loaded == 800 - 13
    assert file.rules == {
        "event_price_present": 6,
        "event_size_positive": 5,
        "index_ts_in_file_range": 2,
        "quote_not_crossed": 3,  # a warning: crossed books occur on real venues
    }
    assert file.quarantine_file is not None
    quarantined = pl.read_parquet(file.quarantine_file)
    assert set(quarantined["ordinal"].to_list()) == bad
    shaped = {int(r) for rows in result.shape_rows.values() for r in rows}
    assert not shaped & bad


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (SynthSpec(schema="trades", records=5, shapes=Shapes(no_last_trade=1)), "no_last_trade"),
        (
            SynthSpec(schema="tbbo", records=5, shapes=Shapes(sideless_book_updates=1)),
            "sideless_book_updates",
        ),
        (SynthSpec(schema="mbo", records=2, shapes=Shapes(book_clears=3)), "only 2 records"),
        (SynthSpec(schema="ohlcv-eod", records=1, version=2), "version 3 only"),
    ],
)
def test_shape_that_does_not_fit_the_schema_raises(
    tmp: Path, spec: SynthSpec, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_dbn(spec, tmp / "bad-shape.dbn")


def test_synth_command_writes_shapes_and_files_without_symbology(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "histetl.cli"]
    book = tmp_path / "opra.mbp-1.dbn"
    stats = tmp_path / "nosym.statistics.dbn"
    shaped = ["--dataset", "OPRA.PILLAR", "--symbols", "AAPL  240119C00190000"]
    shaped += ["--stype-in", "raw_symbol", "--shape", "sideless_book_updates=6"]
    shaped += ["--shape", "book_clears=2"]
    for args in (
        [str(book), "--schema", "mbp-1", "--records", "300", *shaped],
        [str(stats), "--schema", "statistics", "--records", "40", "--no-symbology"],
    ):
        done = subprocess.run([*cli, "synth", *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    _, arr = read(book)
    assert ((arr["side"] == b"N") & (arr["price"] == UNDEF_PRICE)).sum() == 8
    assert (arr["action"] == b"R").sum() == 2
    store, _ = read(stats)
    assert not store.metadata.mappings
    report = tmp_path / "report.json"
    db = f"duckdb:///{tmp_path / 'c.duckdb'}"
    out = ["--quarantine-dir", str(tmp_path / "q"), "--report", str(report)]
    done = subprocess.run(
        [*cli, "replay", str(book), str(stats), "--db", db, *out],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "q").exists() or not any((tmp_path / "q").rglob("*.parquet"))
    bad = subprocess.run(
        [*cli, "synth", str(tmp_path / "x.dbn"), "--schema", "bbo-1s", "--shape", "nope=1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "--shape 'nope=1': expected NAME=COUNT" in bad.stderr
    assert "Traceback" not in bad.stderr
