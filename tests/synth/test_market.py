"""histetl.synth.market: trades, books, BBO samples, MBO order events and bars: empty book
sides, ordered levels, consolidated venues, the sampling grid, one bar per interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from histetl.synth import (
    SynthSpec,
    write_dbn,
)
from histetl.synth.universe import _venue_publishers
from tests.synth.common import (
    DATABENTO_WARNINGS,
    QUOTES,
    UNDEF_PRICE,
    read,
    small,
)

pytestmark = DATABENTO_WARNINGS


def test_quote_schemas_have_empty_book_sides_with_zero_size(tmp: Path) -> None:
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


def test_mbo_has_order_events_with_order_ids(tmp: Path) -> None:
    _, arr = read(write_dbn(SynthSpec(schema="mbo", records=500), tmp / "m-mbo.dbn").path)

    assert set(np.unique(arr["action"]).tolist()) == {b"A", b"C", b"F", b"M", b"T"}
    orders = np.isin(arr["action"], [b"A", b"C", b"M", b"F"])
    assert (arr["order_id"][orders] > 0).all()
    assert set(np.unique(arr["side"]).tolist()) == {b"A", b"B", b"N"}


def test_mbp_10_books_are_ordered_away_from_the_touch(tmp: Path) -> None:
    _, arr = read(write_dbn(SynthSpec(schema="mbp-10", records=500), tmp / "m-10.dbn").path)

    assert int(arr["depth"].max()) <= 9
    for level in range(9):
        for side, better in (("bid", np.greater), ("ask", np.less)):
            here, deeper = arr[f"{side}_px_{level:02d}"], arr[f"{side}_px_{level + 1:02d}"]
            both = (here != UNDEF_PRICE) & (deeper != UNDEF_PRICE)
            assert both.any()
            assert better(here[both], deeper[both]).all(), (side, level)


def test_consolidated_sides_name_a_venue_of_the_dataset(tmp: Path) -> None:
    spec = SynthSpec(
        schema="cmbp-1",
        records=300,
        dataset="EQUS.PLUS",
        symbols=("TSLA",),
        stype_in="raw_symbol",
    )
    _, arr = read(write_dbn(spec, tmp / "m-cmbp.dbn").path)

    venues = set(_venue_publishers("EQUS.PLUS", 60).tolist())
    for side in ("bid", "ask"):
        present = arr[f"{side}_px_00"] != UNDEF_PRICE
        assert set(np.unique(arr[f"{side}_pb_00"][present]).tolist()) <= venues
        assert len(np.unique(arr[f"{side}_pb_00"][present])) > 1
        assert (arr[f"{side}_pb_00"][~present] == 0).all()


@pytest.mark.parametrize(("schema", "grid_s"), [("bbo-1s", 1), ("bbo-1m", 60), ("cbbo-1m", 60)])
def test_bbo_samples_sit_on_the_grid_after_their_last_trade(
    tmp: Path, schema: str, grid_s: int
) -> None:
    _, arr = read(write_dbn(SynthSpec(schema=schema, records=300), tmp / f"m-{schema}.dbn").path)

    assert (arr["ts_recv"] % (grid_s * 10**9) == 0).all()
    assert (arr["ts_event"] <= arr["ts_recv"]).all()


@pytest.mark.parametrize("schema", ["ohlcv-1s", "ohlcv-1m", "ohlcv-1h"])
def test_at_most_one_bar_per_instrument_and_interval(tmp: Path, schema: str) -> None:
    spec = SynthSpec(schema=schema, records=small(schema), symbols=("ES.c.0", "NQ.c.0"))
    _, arr = read(write_dbn(spec, tmp / f"m-{schema}.dbn").path)

    keys = np.stack([arr["ts_event"].astype(np.int64), arr["instrument_id"].astype(np.int64)], 1)
    assert len(np.unique(keys, axis=0)) == len(arr) == spec.records
