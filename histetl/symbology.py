"""Instrument id -> symbol, vectorized, with databento's own semantics.

A DBN file's metadata maps each requested symbol to instrument ids over date intervals
[start_date, end_date). A record resolves by the UTC date of its index timestamp (ts_recv, or
ts_event for schemas without one): the interval of that instrument with the latest start on or
before that date, if the date is before the interval's end. For a continuous request such as
ES.c.0 the symbol is the requested one on both sides of a roll, exactly as
`DBNStore.to_df(map_symbols=True)` shows it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa

from histetl.arrowutil import StringTable, numpy_values, validity
from histetl.errors import DecodeError

_NS_PER_DAY = 86_400 * 10**9
_INSTRUMENT_ID = "instrument_id"


def _day(value: dt.date | str) -> int:
    date = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    return (date - dt.date(1970, 1, 1)).days


class SymbolMap:
    """Sorted mapping intervals; `resolve` maps whole columns at once."""

    def __init__(
        self, ids: np.ndarray, starts: np.ndarray, ends: np.ndarray, symbols: list[str]
    ) -> None:
        keys = (ids.astype(np.uint64) << np.uint64(32)) | starts.astype(np.uint64)
        order = np.argsort(keys, kind="stable")  # ties keep insertion order, as databento's
        self._keys = keys[order]
        self._ids = ids[order].astype(np.uint64)
        self._ends = ends[order]
        self._symbols = StringTable([symbols[i] for i in order])
        self._count = len(order)

    @classmethod
    def from_metadata(cls, metadata: Any, path: str = "") -> SymbolMap:
        stype_in = str(metadata.stype_in) if metadata.stype_in is not None else None
        stype_out = str(metadata.stype_out)
        ids: list[int] = []
        starts: list[int] = []
        ends: list[int] = []
        symbols: list[str] = []
        for symbol_in, intervals in metadata.mappings.items():
            for interval in intervals:
                symbol_out = interval["symbol"]
                if not symbol_out:
                    continue  # a symbol that did not resolve on these dates
                try:
                    if stype_in == "instrument_id":
                        instrument_id, symbol = int(symbol_in), str(symbol_out)
                    elif stype_out == "instrument_id":
                        instrument_id, symbol = int(symbol_out), str(symbol_in)
                    else:
                        raise ValueError(
                            f"stype_in {stype_in} and stype_out {stype_out}: one "
                            "must be instrument_id"
                        )
                except ValueError as exc:
                    raise DecodeError(
                        path,
                        f"symbology mapping {symbol_in!r} -> {symbol_out!r} is unusable: {exc}",
                        offset=8,
                    ) from exc
                ids.append(instrument_id)
                starts.append(_day(interval["start_date"]))
                ends.append(_day(interval["end_date"]))
                symbols.append(symbol)
        return cls(
            np.array(ids, dtype=np.uint64),
            np.array(starts, dtype=np.int64),
            np.array(ends, dtype=np.int64),
            symbols,
        )

    def __len__(self) -> int:
        return self._count

    def resolve(self, instrument_ids: pa.Array, timestamps: pa.Array) -> pa.Array:
        """Symbols (string_view) for parallel arrays of instrument ids and timestamp[ns]; NULL
        where unmapped."""
        n = len(instrument_ids)
        if n == 0 or len(self) == 0:
            return pa.nulls(n, pa.string_view())
        ids = numpy_values(instrument_ids).astype(np.uint64)
        ts_valid = validity(timestamps)
        days = numpy_values(timestamps, np.int64) // _NS_PER_DAY
        query = (ids << np.uint64(32)) | days.astype(np.uint64)
        pos = np.searchsorted(self._keys, query, side="right") - 1
        safe = np.maximum(pos, 0)
        valid = (pos >= 0) & (self._ids[safe] == ids) & (days < self._ends[safe]) & ts_valid
        return self._symbols.take(safe, valid)
