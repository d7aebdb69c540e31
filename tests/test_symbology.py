"""Instrument id -> symbol: databento's interval semantics, vectorized, checked against a plain
reference loop and against databento's own `to_df(map_symbols=True)`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import databento
import numpy as np
import pyarrow as pa
import pytest

from histetl.errors import DecodeError
from histetl.symbology import SymbolMap
from histetl.synth import SynthSpec, write_dbn
from tests.reference import decode_with_symbols

NS_PER_DAY = 86_400 * 10**9
EPOCH = dt.date(1970, 1, 1)


def day(text: str) -> int:
    return (dt.date.fromisoformat(text) - EPOCH).days


def metadata(mappings: dict[str, list[dict[str, str]]], stype_in: str = "raw_symbol") -> object:
    return SimpleNamespace(stype_in=stype_in, stype_out="instrument_id", mappings=mappings)


# ESH4 is instrument 1 until 12-15, then the symbol of 2 from 12-15 on; 3 has a gap (12-16).
MAPPINGS = {
    "ESH4": [
        {"start_date": "2023-12-10", "end_date": "2023-12-15", "symbol": "1"},
        {"start_date": "2023-12-15", "end_date": "2023-12-20", "symbol": "2"},
    ],
    "NQH4": [
        {"start_date": "2023-12-10", "end_date": "2023-12-16", "symbol": "3"},
        {"start_date": "2023-12-17", "end_date": "2023-12-20", "symbol": "3"},
        {"start_date": "2023-12-12", "end_date": "2023-12-13", "symbol": ""},  # unresolved
    ],
}


def reference(ids: list[int], days: list[int | None]) -> list[str | None]:
    """The documented rule, one record at a time: the interval of that instrument with the
    latest start on or before the record's UTC date, if the date is before its end."""
    intervals = [
        (int(i["symbol"]), day(i["start_date"]), day(i["end_date"]), symbol)
        for symbol, items in MAPPINGS.items()
        for i in items
        if i["symbol"]
    ]
    out: list[str | None] = []
    for instrument, when in zip(ids, days, strict=True):
        started = [iv for iv in intervals if iv[0] == instrument and when is not None]
        started = [iv for iv in started if when is not None and iv[1] <= when]
        best = max(started, key=lambda iv: iv[1], default=None)
        out.append(best[3] if best is not None and when is not None and when < best[2] else None)
    return out


def test_resolve_equals_the_documented_rule_on_every_edge() -> None:
    symbols = SymbolMap.from_metadata(metadata(MAPPINGS))
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 5, 2000).tolist()
    days = [
        None if rng.random() < 0.02 else int(d)
        for d in rng.integers(day("2023-12-08"), day("2023-12-22"), 2000)
    ]
    stamps = pa.array(
        [None if d is None else d * NS_PER_DAY + int(rng.integers(0, NS_PER_DAY)) for d in days],
        pa.timestamp("ns", tz="UTC"),
    )
    got = symbols.resolve(pa.array(ids, pa.uint32()), stamps).cast(pa.string()).to_pylist()
    assert got == reference(ids, days)
    assert {"ESH4", "NQH4", None} == set(got)


def test_an_empty_map_or_batch_gives_nulls() -> None:
    stamps = pa.array([0, NS_PER_DAY], pa.timestamp("ns", tz="UTC"))
    ids = pa.array([1, 2], pa.uint32())
    assert SymbolMap.from_metadata(metadata({})).resolve(ids, stamps).null_count == 2
    empty = SymbolMap.from_metadata(metadata(MAPPINGS)).resolve(ids[:0], stamps[:0])
    assert len(empty) == 0


def test_a_mapping_without_instrument_ids_is_a_decode_error() -> None:
    bad = SimpleNamespace(
        stype_in="raw_symbol", stype_out="raw_symbol", mappings={"ESH4": MAPPINGS["ESH4"]}
    )
    with pytest.raises(DecodeError, match="one must be instrument_id"):
        SymbolMap.from_metadata(bad, "x.dbn")


@pytest.mark.parametrize("stype_in", ["continuous", "parent", "raw_symbol"])
def test_symbols_equal_databento_across_a_roll(tmp_path: Path, stype_in: str) -> None:
    path = tmp_path / "t.dbn"
    symbols = {"continuous": "ES.c.0", "parent": "ES.FUT", "raw_symbol": "ESH4,ESZ3"}[stype_in]
    spec = SynthSpec(
        schema="trades",
        records=3000,
        symbols=tuple(symbols.split(",")),
        stype_in=stype_in,
        start=dt.date(2023, 12, 13),
        days=5,
    )
    write_dbn(spec, path)
    ours, _spec = decode_with_symbols(path)
    theirs = (
        databento.DBNStore.from_bytes(path.read_bytes()).to_df(map_symbols=True)["symbol"].tolist()
    )
    assert ours.column("symbol").cast(pa.string()).to_pylist() == theirs
