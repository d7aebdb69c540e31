"""histetl.synth.universe: symbols resolve to instruments that roll together, mapped in the
metadata header."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from histetl.synth import (
    Defects,
    SynthSpec,
    write_dbn,
)
from histetl.synth.universe import _publisher_id, _Universe, _venue_publishers
from tests.synth.common import (
    DATABENTO_WARNINGS,
    read,
)

pytestmark = DATABENTO_WARNINGS


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


def _intervals(spec: SynthSpec) -> dict[str, list[tuple[dt.date, dt.date, str]]]:
    universe = _Universe(spec)
    return {
        m.raw_symbol: [(i.start_date, i.end_date, i.symbol) for i in m.intervals]
        for m in universe.mappings()
    }


def test_a_continuous_symbol_maps_the_front_contract_then_the_next_from_the_roll_day() -> None:
    universe = _Universe(SynthSpec(schema="trades", records=10))

    assert [c.raw_symbol for c in universe.contracts] == ["ESZ3", "ESH4"]
    front, back = (str(i) for i in universe.ids)
    assert _intervals(SynthSpec(schema="trades", records=10)) == {
        "ES.c.0": [
            (dt.date(2023, 12, 14), dt.date(2023, 12, 15), front),
            (dt.date(2023, 12, 15), dt.date(2023, 12, 16), back),
        ]
    }


@pytest.mark.parametrize(
    ("schema", "records", "bad", "first", "last"),
    [
        ("trades", 10, 3, dt.date(2023, 12, 13), dt.date(2023, 12, 17)),  # a day each side
        ("ohlcv-1h", 40, 30, dt.date(2023, 12, 12), dt.date(2023, 12, 18)),  # 30 hours: 2 days
    ],
)
def test_bad_timestamps_widen_the_edge_intervals_so_their_rows_still_resolve(
    schema: str, records: int, bad: int, first: dt.date, last: dt.date
) -> None:
    spec = SynthSpec(schema=schema, records=records, defects=Defects(bad_timestamp=bad))

    (intervals,) = _intervals(spec).values()

    assert intervals[0][0] == first
    assert intervals[0][1] == intervals[1][0] == dt.date(2023, 12, 15)  # the roll stays
    assert intervals[-1][1] == last


@pytest.mark.parametrize(
    ("dataset", "publisher", "venues"),
    [
        ("GLBX.MDP3", 1, [1]),
        ("XNAS.ITCH", 2, [2]),
        ("IFEU.IMPACT", 57, [57, 84]),
        ("NOPE.FEED", 1, [1]),  # not a Databento dataset: GLBX's publisher
    ],
)
def test_publishers_come_from_databentos_publisher_table(
    dataset: str, publisher: int, venues: list[int]
) -> None:
    assert _publisher_id(dataset) == publisher
    assert _venue_publishers(dataset, publisher).tolist() == venues


@pytest.mark.parametrize(
    ("schema", "symbols", "open_minutes"),
    [
        ("trades", ("ESH4",), 1380 + 1320),  # CME Globex: Thursday, Friday until 16:00 CT
        ("trades", ("AAPL",), 2 * 960),  # equities: 04:00-20:00 New York
        ("trades", ("AAPL", "ESH4-ESM4"), 1380 + 1320),  # any future: the futures calendar
        ("imbalance", ("AAPL",), 2 * 15),  # auction windows
    ],
)
def test_the_calendar_follows_what_the_symbols_are(
    schema: str, symbols: tuple[str, ...], open_minutes: int
) -> None:
    spec = SynthSpec(
        schema=schema, records=10, symbols=symbols, stype_in="raw_symbol", dataset="XNAS.ITCH"
    )

    assert int((_Universe(spec).cal.weights > 0).sum()) == open_minutes


def test_instrument_ids_are_stable_hashes_and_unmapped_ids_lie_beyond_them() -> None:
    spec = SynthSpec(
        schema="trades",
        records=10,
        symbols=("ESH4-ESM4", "AAPL"),
        stype_in="raw_symbol",
        dataset="XNAS.ITCH",
    )

    universe = _Universe(spec)

    assert [(c.raw_symbol, c.kind) for c in universe.contracts] == [
        ("ESH4-ESM4", "spread"),
        ("AAPL", "equity"),
    ]
    assert universe.ids.tolist() == [164_463, 1_475]  # futures from 1000, equities below 15000
    assert universe.unmapped_base == 164_463 + 100_001
    assert _Universe(spec).ids.tolist() == universe.ids.tolist()
