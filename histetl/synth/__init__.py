"""Seeded generator of realistic Databento DBN files, for tests, benchmarks and demos.

`write_dbn(SynthSpec(...), path)` writes a DBN file (plain `.dbn`, or zstd-compressed when the
name ends in `.zst`) that databento's own reader accepts: the metadata header comes from
`databento_dbn.Metadata`, every record layout from the record classes of `databento_dbn`
(`databento_dbn.v1`/`v2`/`v3` for DBN version 1/2/3) and every record starts from the bytes the
record class's own constructor produces, so sentinel defaults (`UNDEF_PRICE`, type-max integers
in definitions, `UNDEF_TIMESTAMP`...) are the library's, not ours.

What the data looks like
------------------------
* Instruments. `continuous` symbols (`ES.c.0`, `CL.v.1`) resolve to one contract before a roll
  day and the next contract after it (the roll is the middle day of the range, or the front
  contract's expiration day if that comes first; all ranks of one product roll together), so the
  metadata mappings have two intervals with different instrument ids. `parent` symbols
  (`ES.FUT`) resolve to the two nearest outright contracts plus their calendar spread
  (`ESZ3-ESH4`, instrument class 'S'), each mapped under its own raw symbol as Databento does.
  `raw_symbol` symbols are futures (`ESH4`), spreads (`ESH4-ESM4`) or, if they don't look like a
  future, equities (`AAPL`). Instrument ids are stable hashes of dataset and raw symbol.
  Several symbols interleave in one file.
* Time. Records are spread over [start, start + days) UTC following a weekly session calendar
  (fixed UTC offsets, no DST, no holidays): CME Globex hours for futures (closed Saturday,
  Sunday before 17:00 CT, Friday after 16:00 CT and the daily 16:00-17:00 CT halt; busier in
  regular hours), US equity hours for equities (pre-market, regular, post-market, with bursts at
  the open and close) and the opening/closing auction windows for imbalance. If the range has no
  session at all (a weekend) the activity is uniform.
  Records are sorted by their index timestamp (`ts_recv`, or `ts_event` for OHLCV), and the
  symbol of every record resolves by the UTC date of that timestamp.
* Prices are a random walk on each instrument's tick grid (ES: 0.25 around 4700.00, the next
  contract a little higher), scaled so one day moves roughly 1%. Quotes have bid < ask; a few
  rows of every quote schema have an empty side (price `UNDEF_PRICE`, size 0, count 0). Trade
  sizes are 1..50 contracts (odd and round lots for equities), sides 'A'/'B'/'N', `ts_recv >=
  ts_event` with a small latency and `ts_in_delta`, sequence numbers increase.
* Every schema histetl supports. OHLCV (1s/1m/1h/1d, and eod in DBN v3 only): at most one bar
  per instrument per interval, `ts_event` on the grid (open time), low <= open, close <= high,
  volume > 0. trades; tbbo/tcbbo: trades with the BBO before them; mbp-1/cmbp-1/mbp-10: adds,
  cancels, modifies and trades (mbp-10 at any of ten levels, with ten levels per side); the
  consolidated schemas (cmbp-1, tcbbo, cbbo-*) name each side's venue (`bid_pb_00`) from the
  dataset's publishers. BBO/CBBO: sampled on the 1s/1m grid (`ts_recv` on the grid, `ts_event`
  the last trade before it). MBO: order events (add, cancel, modify, trade, fill) with order
  ids. Statistics: a mix of stat types, with `UNDEF_PRICE` for quantity stats and
  `UNDEF_STAT_QUANTITY` (of the version's width) for price stats (indicative opening price
  carries both), `ts_ref` set for settlements only. Status: a per-instrument cycle of
  pre-open, trading, implied-matching, halt, resume, close messages. Definitions: one record
  per instrument occurrence with raw symbol, class, expiration > activation for futures
  (`UNDEF_TIMESTAMP` for equities), tick, multiplier; v3 spreads alternate one record per leg.
  Imbalance: Nasdaq NOII-style messages in the auction windows.

Defects, shapes and shared keys
-------------------------------
`Defects` counts rows to corrupt with exactly one named defect each (see its docstring); the
rows are chosen at random, disjoint, and every other row stays clean. `exact_duplicates` and
`SynthSpec.shared_key_trades` add rows (a copy right after its original, or a second fill of
the same exchange packet); all other defects modify existing rows. `SynthResult.defect_rows`
gives the 0-based ordinal of every injected row in the written file.

`Shapes` counts rows of unusual but valid real data (interval records before the session's
first trade, sideless book updates, book clears) and `SynthSpec.symbology=False` writes a file
without symbology mappings: records a validator must load, never quarantine.
`SynthResult.shape_rows` gives their ordinals.

Generation is vectorized numpy in fixed blocks of `BLOCK_RECORDS` records with one random
stream per block, so memory does not grow with the record count and the bytes depend only on
the spec (not on `chunk_records`).
"""

from __future__ import annotations

from histetl.dbn import SUPPORTED_SCHEMAS
from histetl.synth.generator import grid_capacity, write_dbn
from histetl.synth.spec import (
    BLOCK_RECORDS,
    Defects,
    Shapes,
    SynthResult,
    SynthSpec,
    index_field,
    record_class,
    record_dtype,
)

__all__ = [
    "BLOCK_RECORDS",
    "SUPPORTED_SCHEMAS",
    "Defects",
    "Shapes",
    "SynthResult",
    "SynthSpec",
    "grid_capacity",
    "index_field",
    "record_class",
    "record_dtype",
    "write_dbn",
]
