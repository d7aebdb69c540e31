"""histetl.synth.reference: statistics, status, imbalance and definition records."""

from __future__ import annotations

from pathlib import Path

import databento_dbn as dbn
import numpy as np

from histetl.synth import (
    SynthSpec,
    write_dbn,
)
from tests.synth.common import (
    DATABENTO_WARNINGS,
    UNDEF_PRICE,
    UNDEF_TS,
    read,
)

pytestmark = DATABENTO_WARNINGS


def test_statistics_status_and_imbalance_carry_the_versions_sentinels(tmp: Path) -> None:
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
