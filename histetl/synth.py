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

import datetime as dt
import math
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any, Final

import databento_dbn as dbn
import numpy as np
import numpy.typing as npt
import zstandard
from databento_dbn import v1 as dbn_v1
from databento_dbn import v2 as dbn_v2
from databento_dbn import v3 as dbn_v3
from databento_dbn.metadata import MappingInterval, SymbolMapping

from histetl.dbn import SUPPORTED_SCHEMAS

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

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Records = npt.NDArray[np.void]


BLOCK_RECORDS: Final = 1 << 17
"""Records generated per random-stream block (the unit of vectorized work)."""

NS: Final = 1_000_000_000
MINUTE_NS: Final = 60 * NS
HOUR_NS: Final = 3_600 * NS
DAY_NS: Final = 86_400 * NS
FIXED: Final = 1_000_000_000  # databento_dbn.FIXED_PRICE_SCALE
UNDEF_PRICE: Final[int] = dbn.UNDEF_PRICE
UNDEF_TIMESTAMP: Final[int] = dbn.UNDEF_TIMESTAMP
F_LAST: Final[int] = dbn.F_LAST

_OHLCV: Final = frozenset({"ohlcv-1s", "ohlcv-1m", "ohlcv-1h", "ohlcv-1d", "ohlcv-eod"})
_BBO: Final = frozenset({"bbo-1s", "bbo-1m", "cbbo-1s", "cbbo-1m"})  # on interval
_TRADE_SPACE: Final = frozenset({"tbbo", "tcbbo"})  # every record a trade, with the BBO before
_BOOK: Final = _TRADE_SPACE | {"mbp-1", "mbp-10", "cmbp-1"}
_BOOK_EVENTS: Final = frozenset({"mbp-1", "mbp-10", "cmbp-1"})  # adds, cancels, ... and trades
_CONSOLIDATED: Final = frozenset({"cmbp-1", "tcbbo", "cbbo-1s", "cbbo-1m"})  # bid_pb/ask_pb
_QUOTES: Final = _BOOK | _BBO
_TRADE_LIKE: Final = _BOOK | {"trades"}
_SHARED_KEY: Final = frozenset({"trades", "tbbo", "mbp-1"})
_GRID_NS: Final[dict[str, int]] = {
    "ohlcv-1s": NS,
    "ohlcv-1m": MINUTE_NS,
    "ohlcv-1h": HOUR_NS,
    "ohlcv-1d": DAY_NS,
    "ohlcv-eod": DAY_NS,
    "bbo-1s": NS,
    "bbo-1m": MINUTE_NS,
    "cbbo-1s": NS,
    "cbbo-1m": MINUTE_NS,
}
_CLASS_NAMES: Final[dict[str, str]] = {
    "trades": "TradeMsg",
    "tbbo": "MBP1Msg",
    "mbp-1": "MBP1Msg",
    "mbp-10": "MBP10Msg",
    "mbo": "MBOMsg",
    "bbo-1s": "BBOMsg",
    "bbo-1m": "BBOMsg",
    "cmbp-1": "CMBP1Msg",
    "tcbbo": "CMBP1Msg",  # databento_dbn: TCBBOMsg is CMBP1Msg
    "cbbo-1s": "CBBOMsg",
    "cbbo-1m": "CBBOMsg",
    "statistics": "StatMsg",
    "definition": "InstrumentDefMsg",
    "status": "StatusMsg",
    "imbalance": "ImbalanceMsg",
    **dict.fromkeys(_OHLCV, "OHLCVMsg"),
}
_VERSION_MODULES: Final[dict[int, Any]] = {1: dbn_v1, 2: dbn_v2, 3: dbn_v3}
_STYPES_IN: Final = ("continuous", "raw_symbol", "parent")

# -- public helpers -------------------------------------------------------------------------


def record_class(schema: str, version: int = 3) -> Any:
    """The `databento_dbn` record class of `schema` in DBN `version` (1, 2 or 3)."""
    if schema not in _CLASS_NAMES:
        raise ValueError(f"unsupported schema {schema!r}; expected one of {SUPPORTED_SCHEMAS}")
    if version not in _VERSION_MODULES:
        raise ValueError(f"unsupported DBN version {version!r}; expected 1, 2 or 3")
    return getattr(_VERSION_MODULES[version], _CLASS_NAMES[schema])


def record_dtype(schema: str, version: int = 3) -> np.dtype[np.void]:
    """The packed numpy layout of one record, straight from the record class's `_dtypes`."""
    cls = record_class(schema, version)
    dtype: np.dtype[np.void] = np.dtype([(str(n), str(t)) for n, t in cls._dtypes])
    if dtype.itemsize != cls.size_hint:
        raise RuntimeError(
            f"{cls.__name__}: numpy layout is {dtype.itemsize} bytes, size_hint {cls.size_hint}"
        )
    return dtype


def index_field(schema: str) -> str:
    """The timestamp that orders and indexes records: `ts_event` for OHLCV, else `ts_recv`."""
    return "ts_event" if schema in _OHLCV else "ts_recv"


# -- spec and result ------------------------------------------------------------------------


@dataclass(frozen=True)
class Defects:
    """How many rows of each defect to inject (0 = none).

    Each injected row has exactly the named defect and nothing else wrong. A defect that means
    nothing for the schema (e.g. `high_below_low` for trades) raises `ValueError` when non-zero.
    """

    crossed_quotes: int = 0
    """Quote schemas (tbbo, tcbbo, mbp-1, mbp-10, cmbp-1, bbo-*, cbbo-*): bid_px_00 > ask_px_00,
    both sides present with positive sizes."""
    locked_quotes: int = 0
    """Quote schemas: bid_px_00 == ask_px_00, both sides present."""
    high_below_low: int = 0
    """ohlcv-*: high < low (high and low swapped, so open/close are outside [low, high] too)."""
    zero_size: int = 0
    """trades, tbbo, tcbbo, mbp-1, mbp-10, cmbp-1 (a trade or a one-sided book event): size == 0."""
    missing_price: int = 0
    """The same schemas: price = UNDEF_PRICE; ohlcv-*: close = UNDEF_PRICE."""
    bad_timestamp: int = 0
    """All schemas: index timestamp outside metadata [start, end), still ts_recv >= ts_event and,
    for bar/bbo schemas, on the interval grid. The symbology intervals at the edges of the
    range are widened (by a day, or as many days as needed on coarse grids) so these rows still
    resolve to a symbol."""
    exact_duplicates: int = 0
    """All schemas: a record repeated byte-for-byte right after itself (adds rows)."""
    unmapped_instrument: int = 0
    """All schemas: an instrument_id with no symbology mapping (a distinct id per row)."""

    def counts(self) -> dict[str, int]:
        """Defect name -> count, in field order."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Shapes:
    """How many rows of each unusual but valid shape of real Databento data to generate.

    Unlike `Defects` these rows are legitimate records (each shape occurs in real files), so a
    validator must load them. Rows are chosen like defects: at random, disjoint from each other
    and from defect rows. A shape that means nothing for the schema raises `ValueError`.
    """

    no_last_trade: int = 0
    """bbo-*/cbbo-*: no trade yet in the session: ts_event UNDEF_TIMESTAMP, price UNDEF_PRICE,
    size 0, side N; the quote is still valid."""
    sideless_book_updates: int = 0
    """mbp-1/mbp-10/cmbp-1: a two-sided BBO change as options venues send it: action A, side N,
    price UNDEF_PRICE, size 0; the book levels are valid."""
    book_clears: int = 0
    """mbp-1/mbp-10/cmbp-1/mbo: a cleaR book: action R, side N, price UNDEF_PRICE, size 0 (and
    every book level of mbp/cmbp records empty)."""

    def counts(self) -> dict[str, int]:
        """Shape name -> count, in field order."""
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}


_SHAPE_SCHEMAS: Final[dict[str, frozenset[str]]] = {
    "no_last_trade": _BBO,
    "sideless_book_updates": _BOOK_EVENTS,
    "book_clears": _BOOK_EVENTS | {"mbo"},
}
_ALL: Final = frozenset(SUPPORTED_SCHEMAS)
_DEFECT_SCHEMAS: Final[dict[str, frozenset[str]]] = {
    "crossed_quotes": _QUOTES,
    "locked_quotes": _QUOTES,
    "high_below_low": _OHLCV,
    "zero_size": _TRADE_LIKE,
    "missing_price": _TRADE_LIKE | _OHLCV,
    "bad_timestamp": _ALL,
    "exact_duplicates": _ALL,
    "unmapped_instrument": _ALL,
}
_DEFAULT_START: Final = dt.date(2023, 12, 14)


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. See the module docstring for what the data looks like."""

    schema: str
    records: int
    """Clean records (before exact duplicates and shared-key trades are added)."""
    dataset: str = "GLBX.MDP3"
    symbols: tuple[str, ...] = ("ES.c.0",)
    """Requested symbols, in `stype_in` symbology."""
    stype_in: str = "continuous"
    """'continuous', 'raw_symbol' or 'parent'."""
    start: dt.date = _DEFAULT_START
    days: int = 2
    """Records are spread over [start, start + days) UTC."""
    seed: int = 0
    version: int = 3
    """DBN version 1, 2 or 3."""
    defects: Defects = field(default_factory=Defects)
    shared_key_trades: int = 0
    """trades/tbbo/mbp-1: extra records that share instrument_id, ts_recv, ts_event and
    sequence with their predecessor but differ in size (or, for trades, sometimes in price by one
    tick): several fills in one exchange packet. The predecessor loses F_LAST."""
    shapes: Shapes = field(default_factory=Shapes)
    """Unusual but valid real-data rows (see `Shapes`)."""
    symbology: bool = True
    """False: the metadata carries no symbology mappings (as in some of Databento's own sample
    files), so no record resolves to a symbol."""


@dataclass(frozen=True)
class SynthResult:
    """What `write_dbn` wrote."""

    path: Path
    records: int
    """Total records written, including injected duplicates and shared-key trades."""
    defect_rows: dict[str, npt.NDArray[np.int64]]
    """Defect name (every `Defects` field) -> sorted 0-based ordinals of the injected rows in
    the file; for `exact_duplicates` the ordinal of the copy."""
    metadata_start: int
    metadata_end: int
    shared_key_rows: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.empty(0, dtype=np.int64)
    )
    """Ordinals of the added shared-key rows (not defects: legitimate records)."""
    shape_rows: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    """Shape name (every `Shapes` field) -> sorted 0-based ordinals of its rows in the file."""


# -- products, contracts, instruments -------------------------------------------------------


@dataclass(frozen=True)
class _Product:
    root: str
    exchange: str
    tick: int  # fixed-point price units
    price: int  # typical price, fixed-point
    months: str  # listed contract months; "" for an equity
    multiplier: int
    unit: str

    @property
    def is_equity(self) -> bool:
        return not self.months


def _px(value: float) -> int:
    return round(value * FIXED)


_FUTURES: Final[dict[str, _Product]] = {
    p.root: p
    for p in (
        _Product("ES", "XCME", _px(0.25), _px(4700), "HMUZ", 50, "IPNT"),
        _Product("MES", "XCME", _px(0.25), _px(4700), "HMUZ", 5, "IPNT"),
        _Product("NQ", "XCME", _px(0.25), _px(16700), "HMUZ", 20, "IPNT"),
        _Product("RTY", "XCME", _px(0.1), _px(1950), "HMUZ", 50, "IPNT"),
        _Product("YM", "XCBT", _px(1.0), _px(37000), "HMUZ", 5, "IPNT"),
        _Product("ZN", "XCBT", _px(1 / 64), _px(111), "HMUZ", 1000, "USD"),
        _Product("6E", "XCME", _px(0.00005), _px(1.09), "HMUZ", 125000, "EUR"),
        _Product("CL", "XNYM", _px(0.01), _px(72), "FGHJKMNQUVXZ", 1000, "BBL"),
        _Product("GC", "XCEC", _px(0.1), _px(2030), "GJMQVZ", 100, "OZTR"),
    )
}
_EQUITY_PRICES: Final[dict[str, float]] = {
    "AAPL": 197.0,
    "MSFT": 370.0,
    "NVDA": 480.0,
    "AMZN": 150.0,
    "TSLA": 250.0,
    "META": 335.0,
    "SPY": 470.0,
    "QQQ": 400.0,
}
_MONTH_CODES: Final = "FGHJKMNQUVXZ"
_CONTINUOUS_RE: Final = re.compile(r"^([A-Z0-9]{1,4})\.([cnv])\.(\d+)$")
_PARENT_RE: Final = re.compile(r"^([A-Z0-9]{1,4})\.FUT$")
_FUTURE_RE: Final = re.compile(r"^([A-Z0-9]{1,3}?)([FGHJKMNQUVXZ])(\d{1,2})$")


def _future_product(root: str) -> _Product:
    known = _FUTURES.get(root)
    if known is not None:
        return known
    return _Product(root, "XCME", _px(0.01), _px(100), "HMUZ", 1, "USD")


def _equity_product(symbol: str, exchange: str) -> _Product:
    price = _EQUITY_PRICES.get(symbol)
    if price is None:
        price = 20 + zlib.crc32(symbol.encode()) % 28_000 / 100
    return _Product(symbol, exchange, _px(0.01), _px(price), "", 1, "")


def _third_friday(year: int, month: int) -> dt.date:
    day = dt.date(year, month, 15)
    return day + dt.timedelta(days=(4 - day.weekday()) % 7)


def _date_ns(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_NS


@dataclass(frozen=True)
class _Contract:
    """One tradable instrument (unique instrument_id)."""

    raw_symbol: str
    product: _Product
    kind: str  # "future", "spread" or "equity"
    tick: int
    price: int  # starting price, on the tick grid
    daily_ticks: float  # typical one-day move, in ticks
    expiration: int
    activation: int
    maturity: tuple[int, int] | None = None  # (year, month)
    legs: tuple[str, ...] = ()  # raw symbols of spread legs


@dataclass(frozen=True)
class _Listing:
    """A contract mapped under `key` (the stype_in symbol) on days [first_day, last_day)."""

    contract: str  # raw symbol
    key: str
    first_day: int
    last_day: int
    weight: float


def _outright(product: _Product, year: int, month: int, rank: int) -> _Contract:
    raw = f"{product.root}{_MONTH_CODES[month - 1]}{year % 10}"
    expiry = _third_friday(year, month)
    price = round(product.price * (1 + 0.004 * rank) / product.tick) * product.tick
    return _Contract(
        raw_symbol=raw,
        product=product,
        kind="future",
        tick=product.tick,
        price=price,
        daily_ticks=0.009 * price / product.tick,
        expiration=_date_ns(expiry) + 13 * HOUR_NS + 30 * MINUTE_NS,
        activation=_date_ns(expiry - dt.timedelta(days=455)) + 23 * HOUR_NS,
        maturity=(year, month),
    )


def _spread(front: _Contract, back: _Contract) -> _Contract:
    tick = front.tick
    price = max(tick, round(abs(back.price - front.price) * 1.5 / tick) * tick)
    price = max(price, round(0.004 * front.price / tick) * tick)
    return _Contract(
        raw_symbol=f"{front.raw_symbol}-{back.raw_symbol}",
        product=front.product,
        kind="spread",
        tick=tick,
        price=price,
        daily_ticks=max(4.0, 0.0005 * front.price / tick),
        expiration=front.expiration,
        activation=max(front.activation, back.activation),
        maturity=front.maturity,
        legs=(front.raw_symbol, back.raw_symbol),
    )


def _equity(symbol: str, exchange: str) -> _Contract:
    product = _equity_product(symbol, exchange)
    return _Contract(
        raw_symbol=symbol,
        product=product,
        kind="equity",
        tick=product.tick,
        price=product.price,
        daily_ticks=0.015 * product.price / product.tick,
        expiration=UNDEF_TIMESTAMP,
        activation=UNDEF_TIMESTAMP,
    )


def _chain(product: _Product, on: dt.date, count: int) -> list[tuple[int, int]]:
    """The next `count` listed (year, month) contracts not yet expired on `on`."""
    months = [_MONTH_CODES.index(code) + 1 for code in product.months]
    out: list[tuple[int, int]] = []
    year = on.year - 1
    while len(out) < count:
        out.extend((year, m) for m in months if _third_friday(year, m) >= on)
        year += 1
    return out[:count]


def _parse_future(raw: str, start: dt.date) -> _Contract | None:
    match = _FUTURE_RE.match(raw)
    if match is None:
        return None
    root, code, digits = match.groups()
    if len(digits) == 2:
        year = 2000 + int(digits)
    else:
        year = next(y for y in range(start.year - 1, start.year + 10) if y % 10 == int(digits))
    return _outright(_future_product(root), year, _MONTH_CODES.index(code) + 1, 0)


# -- session calendar -----------------------------------------------------------------------


def _minute_weights(start_ns: int, days: int, profile: str) -> F64:
    """Relative activity per UTC minute of the range (0 = market closed)."""
    minute = start_ns // MINUTE_NS + np.arange(days * 1440, dtype=np.int64)
    local = minute - (6 * 60 if profile == "future" else 5 * 60)  # CT or ET, no DST
    weekday = (local // 1440 + 3) % 7  # Monday = 0
    mod = local % 1440
    weekdays = weekday <= 4

    def between(lo: float, hi: float) -> npt.NDArray[np.bool_]:
        return (mod >= lo * 60) & (mod < hi * 60)

    if profile == "future":
        closed = (
            (weekday == 5)
            | ((weekday == 6) & (mod < 17 * 60))
            | ((weekday == 4) & (mod >= 16 * 60))
            | ((weekday <= 3) & between(16, 17))
        )
        regular = weekdays & between(8.5, 15.25)
        weights = np.where(closed, 0.0, np.where(regular, 6.0, 1.0))
    elif profile == "equity":
        edges = between(9.5, 9.5 + 5 / 60) | between(16 - 5 / 60, 16)
        weights = weekdays * (
            0.25 * between(4, 9.5) + 4.0 * between(9.5, 16) + 0.25 * between(16, 20) + 12.0 * edges
        )
    else:  # auction windows (imbalance)
        weights = weekdays * (3.0 * between(9 + 25 / 60, 9.5) + 6.0 * between(15 + 50 / 60, 16))
    weights = np.asarray(weights, dtype=np.float64)
    if not weights.any():
        weights = np.ones_like(weights)
    return weights


class _Calendar:
    def __init__(self, start_ns: int, days: int, profile: str) -> None:
        self.start_ns = start_ns
        self.weights = _minute_weights(start_ns, days, profile)
        self.cum = np.concatenate([[0.0], np.cumsum(self.weights)])
        self.day_open: npt.NDArray[np.bool_] = self.weights.reshape(days, 1440).sum(axis=1) > 0

    def times(self, u: F64) -> I64:
        """Map sorted quantiles in [0, 1) to sorted absolute timestamps (inverse activity CDF)."""
        x = u * self.cum[-1]
        minute = np.searchsorted(self.cum, x, side="right") - 1
        minute = np.clip(minute, 0, self.weights.size - 1)
        weight = self.weights[minute]
        frac = np.where(weight > 0, (x - self.cum[minute]) / np.where(weight > 0, weight, 1), 0)
        frac = np.clip(frac, 0.0, 1.0 - 1e-12)
        offset = minute * MINUTE_NS + (frac * MINUTE_NS).astype(np.int64)
        return np.asarray(self.start_ns + offset, dtype=np.int64)

    def open_units(self, day: int, grid_ns: int) -> tuple[I64, int]:
        """Open grid units of `day` (absolute ns) and grid cells per unit."""
        minutes = self.weights[day * 1440 : (day + 1) * 1440] > 0
        base = self.start_ns + day * DAY_NS
        if grid_ns < MINUTE_NS:
            units = base + np.flatnonzero(minutes).astype(np.int64) * MINUTE_NS
            return units, MINUTE_NS // grid_ns
        cells = minutes.reshape(-1, grid_ns // MINUTE_NS).any(axis=1)
        return base + np.flatnonzero(cells).astype(np.int64) * grid_ns, 1


def _roll_day(day_open: npt.NDArray[np.bool_], days: int, hint: int | None) -> int | None:
    if days < 2:
        return None
    target = max(1, days // 2)
    if hint is not None and 1 <= hint < target:
        target = hint
    candidates = [d for d in range(1, days) if day_open[d] and day_open[:d].any()]
    if not candidates:
        return None
    return min(candidates, key=lambda d: (abs(d - target), d))


# -- metadata mappings (structural SymbolMapping / MappingInterval) ------------------------


@dataclass
class _MappingInterval:
    start_date: dt.date
    end_date: dt.date
    symbol: str


@dataclass
class _SymbolMapping:
    raw_symbol: str
    intervals: Sequence[MappingInterval]


# -- the generator --------------------------------------------------------------------------

_SIDES: Final = np.array([b"B", b"A", b"N"], dtype="S1")
_STAT_MIX: Final[tuple[tuple[int, float], ...]] = (
    (5, 0.22),  # TRADING_SESSION_HIGH_PRICE
    (4, 0.22),  # TRADING_SESSION_LOW_PRICE
    (6, 0.14),  # CLEARED_VOLUME
    (9, 0.08),  # OPEN_INTEREST
    (3, 0.10),  # SETTLEMENT_PRICE
    (1, 0.06),  # OPENING_PRICE
    (2, 0.08),  # INDICATIVE_OPENING_PRICE
    (7, 0.05),  # LOWEST_OFFER
    (8, 0.05),  # HIGHEST_BID
)
_QUANTITY_STATS: Final = (6, 9, 19, 10001)  # CLEARED_VOLUME, OPEN_INTEREST, BLOCK_VOLUME, VENUE_1
_PAIRED_STATS: Final = (2, 13)  # INDICATIVE_OPENING_PRICE, VWAP: price and quantity
# (action, reason, trading_event, is_trading, is_quoting)
_STATUS_CYCLE: Final = (
    (1, 1, 0, b"N", b"Y"),  # PRE_OPEN, SCHEDULED
    (7, 1, 2, b"Y", b"Y"),  # TRADING, SCHEDULED, CHANGE_TRADING_SESSION
    (0, 0, 3, b"~", b"~"),  # NONE, IMPLIED_MATCHING_ON
    (8, 2, 0, b"N", b"N"),  # HALT, SURVEILLANCE_INTERVENTION
    (7, 3, 0, b"Y", b"Y"),  # TRADING, MARKET_EVENT
    (12, 1, 0, b"N", b"N"),  # CLOSE, SCHEDULED
)


def _publisher_id(dataset: str) -> int:
    try:
        from databento.common.publishers import Publisher
    except ImportError:  # pragma: no cover - databento is a dependency
        return 1
    venue = dataset.split(".")[0]
    matches = [p for p in Publisher if p.dataset.value == dataset]
    if not matches:
        return 1
    preferred = [p for p in matches if p.venue.value == venue]
    return int((preferred or matches)[0].to_int())


def _venue_publishers(dataset: str, default: int) -> I64:
    """Publisher ids of the dataset's venues: the sides of a consolidated book come from them."""
    try:
        from databento.common.publishers import Publisher
    except ImportError:  # pragma: no cover - databento is a dependency
        return np.array([default], dtype=np.int64)
    ids = sorted(int(p.to_int()) for p in Publisher if p.dataset.value == dataset)
    return np.array(ids or [default], dtype=np.int64)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def _sorted_quantiles(rng: np.random.Generator, a: int, b: int, total: int) -> F64:
    """Sorted values in [a/total, b/total): one block of uniform order statistics."""
    n = b - a
    spacing = np.cumsum(rng.standard_exponential(n + 1))
    return np.asarray((a + n * (spacing[:-1] / spacing[-1])) / total, dtype=np.float64)


def _geometric(u: F64, p: float, top: int) -> I64:
    """Geometric(p) on 1, 2, ... (mostly small), capped at `top`, by inversion of `u`."""
    k = np.floor(np.log1p(-u) / math.log1p(-p)).astype(np.int64) + 1
    return np.minimum(k, top)


def _bucket(u: F64, *edges: float) -> I64:
    """Index of the bucket of `u` between ascending `edges` (0..len(edges))."""
    out = np.zeros(u.size, dtype=np.int64)
    for edge in edges:
        out += u >= edge
    return out


def _choose(u: F64, cum: F64) -> I64:
    return np.minimum(np.searchsorted(cum, u, side="right"), cum.size - 1).astype(np.int64)


class _Synth:
    def __init__(self, spec: SynthSpec) -> None:
        _validate(spec)
        self.spec = spec
        self.schema = spec.schema
        self.n = spec.records
        self.days = spec.days
        self.version = spec.version
        self.cls = record_class(spec.schema, spec.version)
        self.dtype = record_dtype(spec.schema, spec.version)
        self.names = frozenset(self.dtype.names or ())
        self.index = index_field(spec.schema)
        self.grid_ns = _GRID_NS.get(spec.schema, 0)
        self.start_ns = _date_ns(spec.start)
        self.end_ns = self.start_ns + spec.days * DAY_NS
        self.publisher_id = _publisher_id(spec.dataset)
        self.venue_publishers = _venue_publishers(spec.dataset, self.publisher_id)
        self.next_order = 1 + int(_rng(spec.seed, 10).integers(0, 1 << 40))
        self.stream = zlib.crc32(spec.schema.encode())  # schemas get independent streams
        self.exchange = spec.dataset.split(".")[0][:4]
        self._build_universe()
        self._plan_defects()
        if self.grid_ns:
            self._build_grid()
        self.template = self._template()
        # walk and counter state, per contract
        k = len(self.contracts)
        self.level = np.array([c.price // c.tick for c in self.contracts], dtype=np.int64)
        self.floor = np.maximum(self.level // 20, 2)
        self.counter = np.zeros(k, dtype=np.int64)
        self.seq = 1_000_000 + int(_rng(spec.seed, 9).integers(0, 1_000_000))

    # .. universe .............................................................................

    def _build_universe(self) -> None:
        spec = self.spec
        parsed: list[tuple[str, list[_Contract], str]] = []  # (symbol, contracts, how)
        for symbol in spec.symbols:
            parsed.append((symbol, *self._parse_symbol(symbol)))
        kinds = {c.kind for _, cs, _ in parsed for c in cs}
        if self.schema == "imbalance":
            profile = "auction"
        elif kinds == {"equity"}:
            profile = "equity"
        else:
            profile = "future"
        self.cal = _Calendar(self.start_ns, self.days, profile)

        contracts: dict[str, _Contract] = {}
        listings: list[_Listing] = []
        rolls: dict[tuple[str, str], int | None] = {}
        for symbol, cs, how in parsed:
            for c in cs:
                contracts.setdefault(c.raw_symbol, c)
            if how == "continuous":
                front, back = cs
                rule_key = (front.product.root, symbol.split(".")[1])
                if rule_key not in rolls:
                    first = _chain(front.product, spec.start, 1)[0]
                    expiry_day = (_third_friday(*first) - spec.start).days
                    rolls[rule_key] = _roll_day(self.cal.day_open, self.days, expiry_day)
                roll = rolls[rule_key]
                if roll is None:
                    listings.append(_Listing(front.raw_symbol, symbol, 0, self.days, 1.0))
                else:
                    listings.append(_Listing(front.raw_symbol, symbol, 0, roll, 1.0))
                    listings.append(_Listing(back.raw_symbol, symbol, roll, self.days, 1.0))
            elif how == "parent":
                for c, w in zip(cs, (0.6, 0.25, 0.15), strict=True):
                    listings.append(_Listing(c.raw_symbol, c.raw_symbol, 0, self.days, w))
            else:
                weight = 0.3 if cs[0].kind == "spread" else 1.0
                listings.append(_Listing(cs[0].raw_symbol, symbol, 0, self.days, weight))

        self.contracts = list(contracts.values())
        self.listings = listings
        position = {c.raw_symbol: i for i, c in enumerate(self.contracts)}
        ids: list[int] = []
        for c in self.contracts:
            digest = zlib.crc32(f"{spec.dataset}|{c.raw_symbol}".encode())
            iid = 1 + digest % 14_999 if c.kind == "equity" else 1_000 + digest % 899_000
            while iid in ids:
                iid += 1
            ids.append(iid)
        self.ids = np.array(ids, dtype=np.int64)
        self.id_of = dict(zip((c.raw_symbol for c in self.contracts), ids, strict=True))
        self.unmapped_base = max(ids) + 100_001
        self.tick = np.array([c.tick for c in self.contracts], dtype=np.int64)
        self.is_equity = np.array([c.kind == "equity" for c in self.contracts])
        self.any_equity = bool(self.is_equity.any())
        self.on_first_day = np.zeros(len(self.contracts), dtype=bool)
        self.on_last_day = np.zeros(len(self.contracts), dtype=bool)

        self.active: list[I64] = []
        self.active_cum: list[F64] = []
        for d in range(self.days):
            weights: dict[int, float] = {}
            for lst in listings:
                if lst.first_day <= d < lst.last_day:
                    i = position[lst.contract]
                    weights[i] = weights.get(i, 0.0) + lst.weight
            idx = np.array(sorted(weights), dtype=np.int64)
            day_weights = np.array([weights[i] for i in idx], dtype=np.float64)
            self.active.append(idx)
            self.active_cum.append(np.cumsum(day_weights) / day_weights.sum())
        self.on_first_day[self.active[0]] = True
        self.on_last_day[self.active[-1]] = True

        # steps: probability of a one-tick move per event, so a day moves ~daily_ticks
        open_days = max(1, int(self.cal.day_open.sum()))
        per_day = max(self.n, 1) / open_days
        share = np.zeros(len(self.contracts))
        for d in range(self.days):
            cum = self.active_cum[d]
            share[self.active[d]] = np.maximum(share[self.active[d]], np.diff(cum, prepend=0.0))
        daily = np.array([c.daily_ticks for c in self.contracts])
        self.p_move = np.clip(daily**2 / np.maximum(per_day * share, 1.0), 0.001, 0.5)
        self.daily_ticks = daily

    def _parse_symbol(self, symbol: str) -> tuple[list[_Contract], str]:
        spec = self.spec
        if spec.stype_in == "continuous":
            match = _CONTINUOUS_RE.match(symbol)
            if match is None:
                raise ValueError(f"{symbol!r} is not a continuous symbol like 'ES.c.0'")
            product = _future_product(match.group(1))
            rank = int(match.group(3))
            chain = _chain(product, spec.start, rank + 2)
            return [_outright(product, y, m, rank + j) for j, (y, m) in enumerate(chain[rank:])], (
                "continuous"
            )
        if spec.stype_in == "parent":
            match = _PARENT_RE.match(symbol)
            if match is None:
                raise ValueError(f"{symbol!r} is not a futures parent symbol like 'ES.FUT'")
            product = _future_product(match.group(1))
            front, back = (
                _outright(product, y, m, j)
                for j, (y, m) in enumerate(_chain(product, spec.start, 2))
            )
            return [front, back, _spread(front, back)], "parent"
        legs = symbol.split("-")
        if len(legs) == 2:
            parsed = [_parse_future(leg, spec.start) for leg in legs]
            if parsed[0] is not None and parsed[1] is not None:
                return [_spread(parsed[0], parsed[1])], "raw"
        future = _parse_future(symbol, spec.start)
        if future is not None:
            return [future], "raw"
        return [_equity(symbol, self.exchange)], "raw"

    def mappings(self) -> list[SymbolMapping]:
        start = self.spec.start
        bad = self.spec.defects.bad_timestamp
        if bad == 0:
            ext = 0
        elif self.grid_ns:
            ext = max(1, math.ceil(bad * self.grid_ns / DAY_NS))
        else:
            ext = 1
        by_key: dict[str, list[MappingInterval]] = {}
        for lst in self.listings:
            first = start + dt.timedelta(days=lst.first_day - (ext if lst.first_day == 0 else 0))
            last_ext = ext if lst.last_day == self.days else 0
            last = start + dt.timedelta(days=lst.last_day + last_ext)
            interval = _MappingInterval(first, last, str(self.id_of[lst.contract]))
            by_key.setdefault(lst.key, []).append(interval)
        return [_SymbolMapping(key, intervals) for key, intervals in by_key.items()]

    def metadata(self) -> bytes:
        meta = dbn.Metadata(
            dataset=self.spec.dataset,
            start=self.start_ns,
            stype_in=dbn.SType.from_str(self.spec.stype_in),
            stype_out=dbn.SType.from_str("instrument_id"),
            schema=dbn.Schema.from_str(self.schema),
            symbols=list(self.spec.symbols),
            partial=[],
            not_found=[],
            mappings=self.mappings() if self.spec.symbology else [],
            end=self.end_ns,
            version=self.version,
        )
        return bytes(meta)

    # .. defect plan ..........................................................................

    def _plan_defects(self) -> None:
        counts = self.spec.defects.counts()
        shapes = self.spec.shapes.counts()
        names = [*counts, "shared_key_trades", *shapes]
        sizes = [*counts.values(), self.spec.shared_key_trades, *shapes.values()]
        rng = _rng(self.spec.seed, 1)
        picked: I64 = np.empty(0, dtype=np.int64)
        if sum(sizes):
            picked = rng.choice(self.n, size=sum(sizes), replace=False).astype(np.int64)
        self.plan: dict[str, I64] = {}
        offset = 0
        for name, size in zip(names, sizes, strict=True):
            self.plan[name] = np.sort(picked[offset : offset + size])
            offset += size
        self.inserts = np.sort(
            np.concatenate([self.plan["exact_duplicates"], self.plan["shared_key_trades"]])
        )

    def final_ordinals(self, base: I64) -> I64:
        return np.asarray(base + np.searchsorted(self.inserts, base, side="left"), dtype=np.int64)

    def result(self, path: Path) -> SynthResult:
        rows: dict[str, I64] = {}
        for name in self.spec.defects.counts():
            ordinals = self.final_ordinals(self.plan[name])
            rows[name] = ordinals + 1 if name == "exact_duplicates" else ordinals
        return SynthResult(
            path=path,
            records=self.n + int(self.inserts.size),
            defect_rows=rows,
            metadata_start=self.start_ns,
            metadata_end=self.end_ns,
            shared_key_rows=self.final_ordinals(self.plan["shared_key_trades"]) + 1,
            shape_rows={n: self.final_ordinals(self.plan[n]) for n in self.spec.shapes.counts()},
        )

    # .. grid (bars, bbo) .....................................................................

    def _build_grid(self) -> None:
        self.grid_units: list[I64] = []
        self.grid_cells: list[int] = []
        sizes = []
        for d in range(self.days):
            units, cells = self.cal.open_units(d, self.grid_ns)
            self.grid_units.append(units)
            self.grid_cells.append(cells)
            sizes.append(units.size * cells * self.active[d].size)
        self.grid_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        capacity = int(self.grid_offsets[-1])
        if self.n > capacity:
            raise ValueError(
                f"{self.schema}: at most {capacity} bars/samples fit in {self.days} day(s) for "
                f"these symbols; asked for {self.n} (use more days or symbols, or a finer schema)"
            )

    def _grid(self, a: int, b: int, rng: np.random.Generator) -> tuple[I64, I64]:
        """Sorted distinct (timestamp, contract) grid slots for base records [a, b)."""
        u = _sorted_quantiles(rng, a, b, self.n)
        free = int(self.grid_offsets[-1]) - self.n
        v = np.minimum(np.floor(u * (free + 1)).astype(np.int64), free)
        slot = v + np.arange(a, b, dtype=np.int64)
        day = np.searchsorted(self.grid_offsets, slot, side="right") - 1
        ts = np.empty(b - a, dtype=np.int64)
        inst = np.empty(b - a, dtype=np.int64)
        lo = 0
        for d in range(int(day[0]), int(day[-1]) + 1):
            hi = int(np.searchsorted(day, d, side="right"))
            if hi == lo:
                continue
            k = self.active[d].size
            per_unit = self.grid_cells[d] * k
            idx = slot[lo:hi] - self.grid_offsets[d]
            unit, rem = np.divmod(idx, per_unit)
            ts[lo:hi] = self.grid_units[d][unit] + (rem // k) * self.grid_ns
            inst[lo:hi] = self.active[d][rem % k]
            lo = hi
        return ts, inst

    # .. shared pieces ........................................................................

    def _events(self, a: int, b: int, rng: np.random.Generator) -> tuple[I64, I64]:
        """Sorted timestamps following the session calendar, and the contract of each."""
        ts = np.minimum(self.cal.times(_sorted_quantiles(rng, a, b, self.n)), self.end_ns - 1)
        day = (ts - self.start_ns) // DAY_NS
        pick = rng.random(b - a)
        inst = np.empty(b - a, dtype=np.int64)
        lo = 0
        for d in range(int(day[0]), int(day[-1]) + 1):
            hi = int(np.searchsorted(day, d, side="right"))
            if hi > lo:
                inst[lo:hi] = self.active[d][_choose(pick[lo:hi], self.active_cum[d])]
            lo = hi
        return ts, inst

    def _walk(self, inst: I64, rng: np.random.Generator) -> I64:
        """One-tick random walk per contract (levels in ticks), carried across blocks."""
        r = rng.random(inst.size)
        p = self.p_move[inst]
        step = (r < p).astype(np.int64) - 2 * (r < p / 2).astype(np.int64)
        return self._accumulate(inst, step)

    def _accumulate(self, inst: I64, step: I64) -> I64:
        out = np.empty(inst.size, dtype=np.int64)
        for c in self._present(inst):
            mask = inst == c
            levels = self.level[c] + np.cumsum(step[mask])
            np.maximum(levels, self.floor[c], out=levels)
            out[mask] = levels
            self.level[c] = levels[-1]
        return out

    def _present(self, inst: I64) -> list[int]:
        """Contracts that occur in `inst`, ascending."""
        return np.flatnonzero(np.bincount(inst, minlength=len(self.contracts))).tolist()

    def _occurrence(self, inst: I64) -> I64:
        """Running count of records per contract, carried across blocks."""
        out = np.empty(inst.size, dtype=np.int64)
        for c in self._present(inst):
            mask = inst == c
            out[mask] = self.counter[c] + np.arange(int(mask.sum()), dtype=np.int64)
            self.counter[c] += int(mask.sum())
        return out

    def _latency(self, ts_recv: I64, rng: np.random.Generator) -> tuple[I64, I64]:
        """ts_event (<= ts_recv, >= metadata start) and ts_in_delta."""
        lat = np.exp(rng.uniform(math.log(2_000), math.log(400_000), ts_recv.size))
        ts_event = np.maximum(ts_recv - lat.astype(np.int64), self.start_ns)
        delta = ((ts_recv - ts_event) * rng.uniform(0.3, 0.9, ts_recv.size)).astype(np.int64)
        return ts_event, delta

    def _sequence(self, n: int, rng: np.random.Generator) -> I64:
        seq = self.seq + np.cumsum(rng.integers(1, 4, n))
        self.seq = int(seq[-1])
        return np.asarray(seq % (1 << 32), dtype=np.int64)

    def _trade_size(self, inst: I64, rng: np.random.Generator) -> I64:
        """Contracts 1..50 (geometric, mostly small); shares in odd lots or round lots."""
        contracts = _geometric(rng.random(inst.size), 0.35, 50)
        if not self.any_equity:
            return contracts
        u = rng.random(inst.size)
        odd = u < 0.4
        lots = _geometric(np.maximum(u - 0.4, 0.0) / 0.6, 0.45, 50)
        shares = np.where(odd, 1 + (u / 0.4 * 99).astype(np.int64), 100 * lots)
        return np.asarray(np.where(self.is_equity[inst], shares, contracts), dtype=np.int64)

    def _book_size(self, inst: I64, rng: np.random.Generator) -> tuple[I64, I64]:
        n = inst.size
        lots = rng.lognormal(3.2, 0.9, n)
        size = np.clip(np.rint(np.where(self.is_equity[inst], lots * 40, lots)), 1, 100_000)
        count = np.clip(np.rint(size / rng.uniform(2, 10, n)), 1, size)
        return size.astype(np.int64), count.astype(np.int64)

    def _spread_ticks(self, inst: I64, rng: np.random.Generator) -> I64:
        r = rng.random(inst.size)
        futures = 1 + (r > 0.85).astype(np.int64) + (r > 0.97).astype(np.int64)
        if not self.any_equity:
            return futures
        equities = _geometric(r, 0.45, 6)
        return np.asarray(np.where(self.is_equity[inst], equities, futures), dtype=np.int64)

    def _new(self, n: int) -> Records:
        return np.repeat(self.template, n)

    def _empty_rows(self, n: int, rng: np.random.Generator, exclude: I64) -> I64:
        """A few rows per block (at least two) that get an empty book side; callers empty the
        bid on even and the ask on odd positions of the result, so both sides occur."""
        if n < 8:
            return np.empty(0, dtype=np.int64)
        rows = rng.choice(n, size=max(2, n // 1000), replace=False).astype(np.int64)
        return np.setdiff1d(rows, exclude)

    # .. templates ............................................................................

    def _template(self) -> Records:
        rtype = int(dbn.RType.from_schema(dbn.Schema.from_str(self.schema)))
        v3 = record_class(self.schema, 3)
        pub = self.publisher_id
        common = {"publisher_id": pub, "instrument_id": 0, "ts_event": 0}
        if self.schema in ("trades", "tbbo", "mbp-1", "mbp-10"):
            rec = v3(
                **common,
                price=UNDEF_PRICE,
                size=0,
                action=dbn.Action.TRADE,
                side=dbn.Side.NONE,
                depth=0,
                ts_recv=0,
            )
        elif self.schema in ("cmbp-1", "tcbbo"):
            rec = v3(
                rtype=rtype,
                **common,
                price=UNDEF_PRICE,
                size=0,
                action=dbn.Action.TRADE,
                side=dbn.Side.NONE,
                ts_recv=0,
            )
        elif self.schema == "mbo":
            rec = v3(
                **common,
                order_id=0,
                price=UNDEF_PRICE,
                size=0,
                action=dbn.Action.ADD,
                side=dbn.Side.NONE,
                ts_recv=0,
            )
        elif self.schema in _BBO:
            rec = v3(
                rtype=rtype, **common, price=UNDEF_PRICE, size=0, side=dbn.Side.NONE, ts_recv=0
            )
        elif self.schema in _OHLCV:
            rec = v3(rtype=rtype, **common, open=0, high=0, low=0, close=0, volume=0)
        elif self.schema == "statistics":
            rec = v3(
                **common,
                ts_recv=0,
                ts_ref=UNDEF_TIMESTAMP,
                price=UNDEF_PRICE,
                quantity=dbn.UNDEF_STAT_QUANTITY,
                stat_type=dbn.StatType.OPENING_PRICE,
            )
        elif self.schema == "status":
            rec = v3(**common, ts_recv=0)
        elif self.schema == "imbalance":
            rec = v3(
                **common,
                ts_recv=0,
                ref_price=UNDEF_PRICE,
                auction_time=0,
                cont_book_clr_price=UNDEF_PRICE,
                auct_interest_clr_price=UNDEF_PRICE,
                paired_qty=0,
                total_imbalance_qty=0,
                auction_type="O",
                side=dbn.Side.NONE,
                significant_imbalance="L",
            )
        else:  # definition
            rec = v3(
                **common,
                ts_recv=0,
                min_price_increment=UNDEF_PRICE,
                display_factor=UNDEF_PRICE,
                raw_symbol="",
                asset="",
                security_type="",
                instrument_class=dbn.InstrumentClass.FUTURE,
                security_update_action=dbn.SecurityUpdateAction.ADD,
            )
        source = np.frombuffer(bytes(rec), dtype=record_dtype(self.schema, 3))
        out = np.zeros(1, dtype=self.dtype)
        prices = set(self.cls._price_fields)
        for name in self.dtype.names or ():
            kind = self.dtype[name]
            if name.startswith("_"):
                continue
            if name in (source.dtype.names or ()):
                value = source[name][0]
                src_kind = source.dtype[name]
                if kind.kind in "iu" and value == np.iinfo(src_kind).max:
                    value = np.iinfo(kind).max  # a sentinel keeps being the sentinel
                out[name] = value
            elif name in prices:
                out[name] = UNDEF_PRICE
            elif kind.kind in "iu":
                out[name] = np.iinfo(kind).max
        out["length"] = self.dtype.itemsize // 4
        out["rtype"] = rtype
        out["publisher_id"] = pub
        return out

    # .. schema generators ....................................................................

    def _trades(
        self, a: int, b: int, rng: np.random.Generator, _forced: I64
    ) -> tuple[Records, I64]:
        ts, inst = self._events(a, b, rng)
        n = b - a
        level = self._walk(inst, rng)
        side = _SIDES[_bucket(rng.random(n), 0.48, 0.96)]
        ts_event, delta = self._latency(ts, rng)
        rec = self._new(n)
        rec["instrument_id"] = self.ids[inst]
        rec["ts_event"] = ts_event
        rec["price"] = level * self.tick[inst]
        rec["size"] = self._trade_size(inst, rng)
        rec["action"] = b"T"
        rec["side"] = side
        rec["flags"] = F_LAST
        rec["depth"] = 0
        rec["ts_recv"] = ts
        rec["ts_in_delta"] = delta
        rec["sequence"] = self._sequence(n, rng)
        return rec, inst

    def _book(self, a: int, b: int, rng: np.random.Generator, forced: I64) -> tuple[Records, I64]:
        ts, inst = self._events(a, b, rng)
        n = b - a
        tick = self.tick[inst]
        bid = self._walk(inst, rng)
        ask = bid + self._spread_ticks(inst, rng)
        bid_sz, bid_ct = self._book_size(inst, rng)
        ask_sz, ask_ct = self._book_size(inst, rng)
        trade_side = _bucket(rng.random(n), 0.47, 0.94)  # B, A, N
        trade_size = self._trade_size(inst, rng)
        trade_px = np.where(trade_side == 0, ask, bid)
        depth = np.zeros(n, dtype=np.int64)
        if self.schema in _TRADE_SPACE:
            action = np.full(n, b"T", dtype="S1")
            side_idx = trade_side
            price = trade_px
            size = trade_size
        else:  # mbp-1/mbp-10/cmbp-1: adds, cancels, modifies and trades at the top of the book
            kind = _bucket(rng.random(n), 0.40, 0.72, 0.82)
            kind[forced] = 3
            action = np.array([b"A", b"C", b"M", b"T"], dtype="S1")[kind]
            book_side = (rng.random(n) < 0.5).astype(np.int64)  # 0 = B, 1 = A
            is_trade = kind == 3
            side_idx = np.where(is_trade, trade_side, book_side)
            price = np.where(is_trade, trade_px, np.where(book_side == 0, bid, ask))
            order = _geometric(rng.random(n), 0.3, 100)
            size = np.where(
                is_trade, trade_size, np.where(self.is_equity[inst], order * 100, order)
            )
            if self.schema == "mbp-10":  # book events at any of the ten levels
                depth = np.where(is_trade, 0, _geometric(rng.random(n), 0.5, 10) - 1)
                price = price + np.where(is_trade, 0, np.where(book_side == 0, -depth, depth))
        empty = self._empty_rows(n, rng, forced)
        empty_bid = np.zeros(n, dtype=bool)
        alternate = np.arange(empty.size, dtype=np.int64) % 2  # 0 = bid, 1 = ask empty
        if self.schema in _TRADE_SPACE:  # a buy lifted the ask (bid empty) or a sell hit the bid
            trade_side[empty] = alternate
            price[empty] = np.where(alternate == 0, ask[empty], bid[empty])
            empty_bid[empty] = alternate == 0
        else:  # a cancel at the top that emptied its side
            book_side[empty] = alternate
            action[empty] = b"C"
            empty_bid[empty] = book_side[empty] == 0
            side_idx[empty] = book_side[empty]
            depth[empty] = 0
            price[empty] = np.where(book_side[empty] == 0, bid[empty], ask[empty])
            size[empty] = np.minimum(size[empty], 100)
        empty_ask = np.zeros(n, dtype=bool)
        empty_ask[empty] = ~empty_bid[empty]
        ts_event, delta = self._latency(ts, rng)
        rec = self._new(n)
        rec["instrument_id"] = self.ids[inst]
        rec["ts_event"] = ts_event
        rec["price"] = price * tick
        rec["size"] = size
        rec["action"] = action
        rec["side"] = _SIDES[side_idx]
        rec["flags"] = F_LAST
        rec["ts_recv"] = ts
        rec["ts_in_delta"] = delta
        if "depth" in self.names:
            rec["depth"] = depth
        if "sequence" in self.names:
            rec["sequence"] = self._sequence(n, rng)
        self._fill_quotes(
            rec,
            inst,
            tick,
            (bid, ask),
            (bid_sz, bid_ct),
            (ask_sz, ask_ct),
            empty_bid,
            empty_ask,
            rng,
        )
        return rec, inst

    def _fill_quotes(
        self,
        rec: Records,
        inst: I64,
        tick: I64,
        levels: tuple[I64, I64],
        bid: tuple[I64, I64],
        ask: tuple[I64, I64],
        empty_bid: npt.NDArray[np.bool_],
        empty_ask: npt.NDArray[np.bool_],
        rng: np.random.Generator,
    ) -> None:
        """The top of the book (levels in ticks); mbp-10 also levels 01..09 behind it, and the
        consolidated schemas the publisher of each side instead of an order count."""
        bid_px, ask_px = levels[0] * tick, levels[1] * tick
        rec["bid_px_00"] = np.where(empty_bid, UNDEF_PRICE, bid_px)
        rec["ask_px_00"] = np.where(empty_ask, UNDEF_PRICE, ask_px)
        rec["bid_sz_00"] = np.where(empty_bid, 0, bid[0])
        rec["ask_sz_00"] = np.where(empty_ask, 0, ask[0])
        if self.schema in _CONSOLIDATED:
            pubs = self.venue_publishers
            rec["bid_pb_00"] = np.where(empty_bid, 0, pubs[rng.integers(0, pubs.size, inst.size)])
            rec["ask_pb_00"] = np.where(empty_ask, 0, pubs[rng.integers(0, pubs.size, inst.size)])
            return
        rec["bid_ct_00"] = np.where(empty_bid, 0, bid[1])
        rec["ask_ct_00"] = np.where(empty_ask, 0, ask[1])
        if self.schema != "mbp-10":
            return
        for k in range(1, 10):
            for side, empty, px, sign in (
                ("bid", empty_bid, bid_px, -1),
                ("ask", empty_ask, ask_px, 1),
            ):
                sz, ct = self._book_size(inst, rng)
                rec[f"{side}_px_{k:02d}"] = np.where(empty, UNDEF_PRICE, px + sign * k * tick)
                rec[f"{side}_sz_{k:02d}"] = np.where(empty, 0, sz)
                rec[f"{side}_ct_{k:02d}"] = np.where(empty, 0, ct)

    def _bbo(self, a: int, b: int, rng: np.random.Generator, _forced: I64) -> tuple[Records, I64]:
        ts, inst = self._grid(a, b, rng)
        n = b - a
        tick = self.tick[inst]
        bid = self._walk(inst, rng)
        ask = bid + self._spread_ticks(inst, rng)
        bid_sz, bid_ct = self._book_size(inst, rng)
        ask_sz, ask_ct = self._book_size(inst, rng)
        trade_side = _bucket(rng.random(n), 0.49, 0.98)
        since = (rng.random(n) * self.grid_ns).astype(np.int64)
        empty = self._empty_rows(n, rng, np.empty(0, dtype=np.int64))
        empty_bid = np.zeros(n, dtype=bool)
        empty_bid[empty] = np.arange(empty.size) % 2 == 0
        empty_ask = np.zeros(n, dtype=bool)
        empty_ask[empty] = ~empty_bid[empty]
        rec = self._new(n)
        rec["instrument_id"] = self.ids[inst]
        rec["ts_event"] = ts - since  # the first interval's last trade may precede the file
        rec["price"] = np.where(trade_side == 0, ask, bid) * tick
        rec["size"] = self._trade_size(inst, rng)
        rec["side"] = _SIDES[trade_side]
        rec["flags"] = F_LAST
        rec["ts_recv"] = ts
        if "sequence" in self.names:
            rec["sequence"] = self._sequence(n, rng)
        self._fill_quotes(
            rec,
            inst,
            tick,
            (bid, ask),
            (bid_sz, bid_ct),
            (ask_sz, ask_ct),
            empty_bid,
            empty_ask,
            rng,
        )
        return rec, inst

    def _mbo(self, a: int, b: int, rng: np.random.Generator, _forced: I64) -> tuple[Records, I64]:
        """Order events: adds, cancels, modifies, trades and fills around the touch."""
        ts, inst = self._events(a, b, rng)
        n = b - a
        tick = self.tick[inst]
        bid = self._walk(inst, rng)
        ask = bid + self._spread_ticks(inst, rng)
        kind = _bucket(rng.random(n), 0.45, 0.80, 0.88, 0.96)  # A, C, M, T, F
        action = np.array([b"A", b"C", b"M", b"T", b"F"], dtype="S1")[kind]
        book_side = (rng.random(n) < 0.5).astype(np.int64)  # 0 = B, 1 = A
        trade_side = _bucket(rng.random(n), 0.47, 0.94)
        is_trade = kind == 3
        away = _geometric(rng.random(n), 0.4, 10) - 1  # levels behind the touch
        resting = np.where(book_side == 0, bid - away, ask + away)
        price = np.where(is_trade, np.where(trade_side == 0, ask, bid), resting)
        side_idx = np.where(is_trade, trade_side, book_side)
        order = _geometric(rng.random(n), 0.3, 100)
        size = np.where(
            is_trade,
            self._trade_size(inst, rng),
            np.where(self.is_equity[inst], order * 100, order),
        )
        # adds take new order ids; cancels, modifies and fills refer to recent ones; trades 0
        new = kind == 0
        ids = self.next_order + np.cumsum(new)
        self.next_order = int(ids[-1]) + 1
        recent = np.maximum(ids - rng.integers(0, 1000, n), 1)
        order_id = np.where(new, ids, np.where(is_trade, 0, recent))
        ts_event, delta = self._latency(ts, rng)
        rec = self._new(n)
        rec["instrument_id"] = self.ids[inst]
        rec["ts_event"] = ts_event
        rec["order_id"] = order_id
        rec["price"] = price * tick
        rec["size"] = size
        rec["action"] = action
        rec["side"] = _SIDES[side_idx]
        rec["flags"] = F_LAST
        rec["channel_id"] = 0
        rec["ts_recv"] = ts
        rec["ts_in_delta"] = delta
        rec["sequence"] = self._sequence(n, rng)
        return rec, inst

    def _ohlcv(self, a: int, b: int, rng: np.random.Generator, _forced: I64) -> tuple[Records, I64]:
        ts, inst = self._grid(a, b, rng)
        n = b - a
        tick = self.tick[inst]
        sigma = np.maximum(self.daily_ticks[inst] * math.sqrt(self.grid_ns / DAY_NS), 0.4)
        move = np.rint(rng.normal(0.0, 1.0, n) * sigma).astype(np.int64)
        gap = np.where(rng.random(n) < 0.1, rng.integers(-1, 2, n), 0).astype(np.int64)
        close = self._accumulate(inst, gap + move)
        open_ = np.maximum(close - move, self.floor[inst])
        wick_up = np.abs(np.rint(rng.normal(0.0, 0.5, n) * sigma)).astype(np.int64)
        wick_down = np.abs(np.rint(rng.normal(0.0, 0.5, n) * sigma)).astype(np.int64)
        high = np.maximum(open_, close) + wick_up
        low = np.maximum(np.minimum(open_, close) - wick_down, 1)
        mean = 7.0 * (self.grid_ns / NS) ** 0.85
        volume = np.maximum(1, np.rint(rng.lognormal(math.log(mean), 0.7, n)))
        volume = np.where(self.is_equity[inst], volume * 100, volume)
        rec = self._new(n)
        rec["instrument_id"] = self.ids[inst]
        rec["ts_event"] = ts
        rec["open"] = open_ * tick
        rec["high"] = high * tick
        rec["low"] = low * tick
        rec["close"] = close * tick
        rec["volume"] = volume.astype(np.int64)
        return rec, inst

    def _statistics(
        self, a: int, b: int, rng: np.random.Generator, _forced: I64
    ) -> tuple[Records, I64]:
        ts, inst = self._events(a, b, rng)
        n = b - a
        tick = self.tick[inst]
        level = self._walk(inst, rng)
        types = np.array([t for t, _ in _STAT_MIX], dtype=np.int64)
        cum = np.cumsum([w for _, w in _STAT_MIX])
        stat = types[_choose(rng.random(n), cum / cum[-1])]
        offset = rng.integers(0, 12, n)
        price = np.where(stat == 5, level + offset, np.where(stat == 4, level - offset, level))
        price = np.maximum(price, 1) * tick
        is_qty = np.isin(stat, _QUANTITY_STATS)
        qty_max = int(np.iinfo(self.dtype["quantity"]).max)
        quantity = np.where(
            stat == 9, rng.lognormal(14.5, 0.3, n), rng.lognormal(13.2, 0.6, n)
        ).astype(np.int64)
        settle = stat == 3
        ts_event, delta = self._latency(ts, rng)
        rec = self._new(n)
        rec["instrument_id"] = self.ids[inst]
        rec["ts_event"] = ts_event
        rec["ts_recv"] = ts
        rec["ts_ref"] = np.where(settle, (ts // DAY_NS) * DAY_NS, UNDEF_TIMESTAMP).astype(np.uint64)
        rec["price"] = np.where(is_qty, UNDEF_PRICE, price)
        # indicative opening price and VWAP carry a quantity beside their price
        has_qty = is_qty | np.isin(stat, _PAIRED_STATS)
        rec["quantity"] = np.where(has_qty, np.minimum(quantity, qty_max - 1), qty_max)
        rec["sequence"] = self._sequence(n, rng)
        rec["ts_in_delta"] = delta
        rec["stat_type"] = stat
        rec["channel_id"] = np.where(self.is_equity[inst], 0, 10 + inst % 4)
        rec["update_action"] = 1  # StatUpdateAction.NEW
        rec["stat_flags"] = np.where(settle & (rng.random(n) < 0.5), 1, 0)
        return rec, inst

    def _status(
        self, a: int, b: int, rng: np.random.Generator, _forced: I64
    ) -> tuple[Records, I64]:
        ts, inst = self._events(a, b, rng)
        n = b - a
        step = self._occurrence(inst) % len(_STATUS_CYCLE)
        cycle = list(zip(*_STATUS_CYCLE, strict=True))
        ts_event, _ = self._latency(ts, rng)
        rec = self._new(n)
        rec["instrument_id"] = self.ids[inst]
        rec["ts_event"] = ts_event
        rec["ts_recv"] = ts
        rec["action"] = np.array(cycle[0], dtype=np.int64)[step]
        rec["reason"] = np.array(cycle[1], dtype=np.int64)[step]
        rec["trading_event"] = np.array(cycle[2], dtype=np.int64)[step]
        rec["is_trading"] = np.array(cycle[3], dtype="S1")[step]
        rec["is_quoting"] = np.array(cycle[4], dtype="S1")[step]
        rec["is_short_sell_restricted"] = np.where(self.is_equity[inst], b"N", b"~")
        return rec, inst

    def _imbalance(
        self, a: int, b: int, rng: np.random.Generator, _forced: I64
    ) -> tuple[Records, I64]:
        ts, inst = self._events(a, b, rng)
        n = b - a
        tick = self.tick[inst]
        level = self._walk(inst, rng)
        local = ts - 5 * HOUR_NS  # ET, no DST
        closing = (local % DAY_NS) >= 12 * HOUR_NS
        auction_local = (local // DAY_NS) * DAY_NS + np.where(
            closing, 16 * HOUR_NS, 9 * HOUR_NS + 30 * MINUTE_NS
        )
        paired = np.rint(rng.lognormal(10.5, 1.0, n)).astype(np.int64)
        imbalance = np.where(rng.random(n) < 0.1, 0, np.rint(rng.lognormal(9.0, 1.2, n))).astype(
            np.int64
        )
        side = np.where(imbalance == 0, 2, (rng.random(n) < 0.5).astype(np.int64))
        near = np.maximum(level + rng.integers(-3, 4, n), 1)
        far = np.maximum(level + rng.integers(-8, 9, n), 1)
        ts_event, _ = self._latency(ts, rng)
        rec = self._new(n)
        rec["instrument_id"] = self.ids[inst]
        rec["ts_event"] = ts_event
        rec["ts_recv"] = ts
        rec["ref_price"] = level * tick
        rec["auction_time"] = auction_local + 5 * HOUR_NS
        rec["cont_book_clr_price"] = near * tick
        rec["auct_interest_clr_price"] = far * tick
        rec["paired_qty"] = paired
        rec["total_imbalance_qty"] = imbalance
        rec["auction_type"] = np.where(closing, b"C", b"O")
        rec["side"] = _SIDES[side]
        return rec, inst

    def _definition(
        self, a: int, b: int, rng: np.random.Generator, _forced: I64
    ) -> tuple[Records, I64]:
        if not hasattr(self, "_def_rows"):
            self._def_rows, self._def_first, self._def_count = self._definition_rows()
        ts, inst = self._events(a, b, rng)
        variant = self._def_first[inst] + self._occurrence(inst) % self._def_count[inst]
        ts_event, _ = self._latency(ts, rng)
        rec = self._def_rows[variant]
        rec["ts_event"] = ts_event
        rec["ts_recv"] = ts
        return rec, inst

    def _definition_rows(self) -> tuple[Records, I64, I64]:
        """Template definition rows: one per contract, one per leg for v3 spreads."""
        rows: list[Records] = []
        first: list[int] = []
        count: list[int] = []
        names = set(self.dtype.names or ())
        trading_date = (self.spec.start - dt.date(1970, 1, 1)).days - 1
        for i, c in enumerate(self.contracts):
            p = c.product
            values: dict[str, Any] = {
                "instrument_id": int(self.ids[i]),
                "raw_symbol": c.raw_symbol.encode(),
                "min_price_increment": c.tick,
                "display_factor": FIXED,
                "high_limit_price": round(c.price * 1.07 / c.tick) * c.tick,
                "low_limit_price": round(c.price * 0.93 / c.tick) * c.tick,
                "currency": b"USD",
                "exchange": p.exchange.encode(),
                "security_update_action": b"A",
                "user_defined_instrument": b"N",
                "min_trade_vol": 1,
            }
            if c.kind == "equity":
                values |= {
                    "instrument_class": b"K",
                    "asset": c.raw_symbol[:10].encode(),
                    "security_type": b"",
                    "cfi": b"ESXXXX",
                    "min_lot_size_round_lot": 100,
                    "trading_reference_price": c.price,
                }
            else:
                year, month = c.maturity or (0, 0)
                values |= {
                    "instrument_class": b"S" if c.kind == "spread" else b"F",
                    "expiration": c.expiration,
                    "activation": c.activation,
                    "max_price_variation": 40 * c.tick,
                    "unit_of_measure_qty": p.multiplier * FIXED,
                    "min_price_increment_amount": c.tick * p.multiplier,
                    "raw_instrument_id": int(self.ids[i]),
                    "market_depth_implied": 2,
                    "market_depth": 10,
                    "market_segment_id": 64,
                    "max_trade_vol": 3000,
                    "appl_id": 310,
                    "channel_id": 10,
                    "maturity_year": year,
                    "maturity_month": month,
                    "settl_currency": b"USD",
                    "group": p.root.encode(),
                    "asset": p.root.encode(),
                    "cfi": b"FMIXSX" if c.kind == "spread" else b"FFIXSX",
                    "security_type": b"FUT",
                    "unit_of_measure": p.unit.encode(),
                    "underlying": p.root.encode(),
                    "match_algorithm": b"F",
                    "trading_reference_price": c.price,
                    "trading_reference_date": trading_date,
                    "md_security_trading_status": 17,
                }
            legs: list[dict[str, Any]] = [{}]
            if c.kind == "spread" and "leg_count" in names:
                legs = [
                    {
                        "leg_count": 2,
                        "leg_index": j,
                        "leg_instrument_id": self.id_of.get(leg, 0),
                        "leg_raw_symbol": leg.encode(),
                        "leg_instrument_class": b"F",
                        "leg_side": b"B" if j == 0 else b"A",
                        "leg_ratio_price_numerator": 1,
                        "leg_ratio_price_denominator": 1,
                        "leg_ratio_qty_numerator": 1,
                        "leg_ratio_qty_denominator": 1,
                    }
                    for j, leg in enumerate(c.legs)
                ]
            first.append(len(rows))
            count.append(len(legs))
            for leg_values in legs:
                row = self.template.copy()
                for name, value in (values | leg_values).items():
                    if name in names:
                        row[name] = value
                rows.append(row)
        return (
            np.concatenate(rows),
            np.array(first, dtype=np.int64),
            np.array(count, dtype=np.int64),
        )

    # .. blocks ...............................................................................

    def blocks(self) -> Iterator[Records]:
        generate = {
            "trades": self._trades,
            "mbo": self._mbo,
            **dict.fromkeys(_BOOK, self._book),
            "statistics": self._statistics,
            "status": self._status,
            "imbalance": self._imbalance,
            "definition": self._definition,
            **dict.fromkeys(_BBO, self._bbo),
            **dict.fromkeys(_OHLCV, self._ohlcv),
        }[self.schema]
        for k, a in enumerate(range(0, self.n, BLOCK_RECORDS)):
            b = min(a + BLOCK_RECORDS, self.n)
            rng = _rng(self.spec.seed, 2, self.stream, k)
            forced = self._local("shared_key_trades", a, b)
            rec, inst = generate(a, b, rng, forced)
            self._shape(rec, a, b)
            self._inject(rec, inst, a, b, _rng(self.spec.seed, 3, self.stream, k))
            yield self._insert(rec, a, b)

    def _local(self, name: str, a: int, b: int) -> I64:
        rows = self.plan[name]
        lo, hi = np.searchsorted(rows, [a, b])
        return np.asarray(rows[lo:hi] - a, dtype=np.int64)

    def _rank(self, name: str, a: int, local: I64) -> I64:
        """1-based rank of each row among all rows with this defect."""
        return np.searchsorted(self.plan[name], local + a).astype(np.int64) + 1

    def _shape(self, rec: Records, a: int, b: int) -> None:
        """Turn the planned rows into the unusual but valid shapes of `Shapes`."""
        rows = self._local("no_last_trade", a, b)
        if rows.size:
            rec["ts_event"][rows] = UNDEF_TIMESTAMP
            rec["price"][rows] = UNDEF_PRICE
            rec["size"][rows] = 0
            rec["side"][rows] = b"N"
        for name, action in (("sideless_book_updates", b"A"), ("book_clears", b"R")):
            rows = self._local(name, a, b)
            if rows.size == 0:
                continue
            rec["action"][rows] = action
            rec["side"][rows] = b"N"
            rec["price"][rows] = UNDEF_PRICE
            rec["size"][rows] = 0
            if "depth" in self.names:
                rec["depth"][rows] = 0
            if "order_id" in self.names:
                rec["order_id"][rows] = 0
            if action == b"R" and "bid_px_00" in self.names:  # the book is empty after a clear
                for name_ in self.names:
                    if name_[:7] in ("bid_px_", "ask_px_"):
                        rec[name_][rows] = UNDEF_PRICE
                    elif name_[:4] in ("bid_", "ask_"):
                        rec[name_][rows] = 0

    def _inject(self, rec: Records, inst: I64, a: int, b: int, rng: np.random.Generator) -> None:
        tick = self.tick[inst]
        for name in ("crossed_quotes", "locked_quotes"):
            rows = self._local(name, a, b)
            if rows.size == 0:
                continue
            bid = rec["bid_px_00"][rows]
            ask = rec["ask_px_00"][rows]
            level = np.where(bid != UNDEF_PRICE, bid, ask - tick[rows])
            cross = rng.integers(1, 4, rows.size) if name == "crossed_quotes" else 0
            rec["ask_px_00"][rows] = level
            rec["bid_px_00"][rows] = level + cross * tick[rows]
            for fld in ("bid_sz_00", "ask_sz_00", "bid_ct_00", "ask_ct_00"):
                if fld in self.names:
                    rec[fld][rows] = np.maximum(rec[fld][rows], 1)
            for fld in ("bid_pb_00", "ask_pb_00"):
                if fld in self.names:
                    rec[fld][rows] = np.where(
                        rec[fld][rows] == 0, self.venue_publishers[0], rec[fld][rows]
                    )
        rows = self._local("high_below_low", a, b)
        if rows.size:
            high = rec["high"][rows].copy()
            low = rec["low"][rows]
            rec["high"][rows] = low
            rec["low"][rows] = np.where(high == low, low + tick[rows], high)
        rows = self._local("zero_size", a, b)
        if rows.size:
            rec["size"][rows] = 0
        rows = self._local("missing_price", a, b)
        if rows.size:
            rec["close" if self.schema in _OHLCV else "price"][rows] = UNDEF_PRICE
        rows = self._local("bad_timestamp", a, b)
        if rows.size:
            self._bad_timestamps(rec, inst, rows, self._rank("bad_timestamp", a, rows), rng)
        rows = self._local("unmapped_instrument", a, b)
        if rows.size:
            ids = self.unmapped_base + self._rank("unmapped_instrument", a, rows)
            rec["instrument_id"][rows] = ids
            if self.schema == "definition":
                rec["raw_symbol"][rows] = np.char.add(b"UNMAPPED", ids.astype("S10"))

    def _bad_timestamps(
        self, rec: Records, inst: I64, rows: I64, rank: I64, rng: np.random.Generator
    ) -> None:
        can_before = self.on_first_day[inst[rows]]
        can_after = self.on_last_day[inst[rows]]
        coin = rng.random(rows.size) < 0.5
        before = can_before & (~can_after | coin)
        if self.grid_ns:
            new = np.where(
                before,
                self.start_ns - rank * self.grid_ns,
                self.end_ns + (rank - 1) * self.grid_ns,
            )
        else:
            jitter = (rng.random(rows.size) * (DAY_NS - 1)).astype(np.int64)
            new = np.where(before, self.start_ns - 1 - jitter, self.end_ns + jitter)
        old = rec[self.index][rows].astype(np.int64)
        rec[self.index][rows] = new
        if self.index == "ts_recv":  # keep ts_recv - ts_event
            rec["ts_event"][rows] = new - (old - rec["ts_event"][rows].astype(np.int64))

    def _insert(self, rec: Records, a: int, b: int) -> Records:
        dups = self._local("exact_duplicates", a, b)
        shared = self._local("shared_key_trades", a, b)
        if dups.size == 0 and shared.size == 0:
            return rec
        repeat = np.ones(b - a, dtype=np.int64)
        repeat[dups] = 2
        repeat[shared] = 2
        out = rec[np.repeat(np.arange(b - a), repeat)]
        if shared.size:
            inserted = np.sort(np.concatenate([dups, shared]))
            pred = shared + np.searchsorted(inserted, shared, side="left")
            follow = pred + 1
            out["flags"][pred] = out["flags"][pred] & ~np.uint8(F_LAST)
            size = out["size"][pred].astype(np.int64)
            price = out["price"][pred]
            side = out["side"][pred]
            bump = np.minimum(size + 1 + (size % 7), np.iinfo(np.uint32).max - 1)
            if self.schema == "trades":
                instrument_tick = self._tick_by_id(out["instrument_id"][pred])
                up = (side == b"B") & (np.arange(shared.size) % 2 == 0)
                down = (
                    (side == b"A")
                    & (price > 2 * instrument_tick)
                    & (np.arange(shared.size) % 2 == 0)
                )
                out["price"][follow] = (
                    price + np.where(up, instrument_tick, 0) - np.where(down, instrument_tick, 0)
                )
                out["size"][follow] = np.where(up | down, size, bump)
            else:
                out["size"][follow] = bump
        return out

    def _tick_by_id(self, ids: npt.NDArray[Any]) -> I64:
        order = np.argsort(self.ids)
        pos = order[np.searchsorted(self.ids[order], ids.astype(np.int64))]
        return np.asarray(self.tick[pos], dtype=np.int64)


def _validate(spec: SynthSpec) -> None:
    if spec.schema not in SUPPORTED_SCHEMAS:
        raise ValueError(f"unsupported schema {spec.schema!r}; expected one of {SUPPORTED_SCHEMAS}")
    if spec.version not in _VERSION_MODULES:
        raise ValueError(f"unsupported DBN version {spec.version!r}; expected 1, 2 or 3")
    if spec.schema == "ohlcv-eod" and spec.version < 3:
        # ohlcv-eod came after DBN v3; databento's own reader knows it in v3 files only
        raise ValueError("ohlcv-eod is written as DBN version 3 only")
    if spec.stype_in not in _STYPES_IN:
        raise ValueError(f"unsupported stype_in {spec.stype_in!r}; expected one of {_STYPES_IN}")
    if spec.records < 0 or spec.days < 1 or spec.seed < 0 or spec.shared_key_trades < 0:
        raise ValueError("records, seed and shared_key_trades must be >= 0 and days >= 1")
    if not spec.symbols or len(set(spec.symbols)) != len(spec.symbols):
        raise ValueError(f"symbols must be non-empty and distinct: {spec.symbols!r}")
    counts = spec.defects.counts()
    for name, count in counts.items():
        if count < 0:
            raise ValueError(f"defect {name} must be >= 0, got {count}")
        if count and spec.schema not in _DEFECT_SCHEMAS[name]:
            raise ValueError(f"defect {name} does not apply to schema {spec.schema!r}")
    if spec.shared_key_trades and spec.schema not in _SHARED_KEY:
        raise ValueError(f"shared_key_trades does not apply to schema {spec.schema!r}")
    shapes = spec.shapes.counts()
    for name, count in shapes.items():
        if count < 0:
            raise ValueError(f"shape {name} must be >= 0, got {count}")
        if count and spec.schema not in _SHAPE_SCHEMAS[name]:
            raise ValueError(f"shape {name} does not apply to schema {spec.schema!r}")
    wanted = sum(counts.values()) + spec.shared_key_trades + sum(shapes.values())
    if wanted > spec.records:
        raise ValueError(
            f"{wanted} defect/shared-key/shape rows requested but only {spec.records} records"
        )


def grid_capacity(spec: SynthSpec) -> int:
    """How many bars (OHLCV) or samples (BBO/CBBO) fit `spec`'s days and symbols: one per
    instrument and interval inside the trading sessions. With `records` equal to it, no interval
    of any session is missing."""
    if spec.schema not in _GRID_NS:
        raise ValueError(f"{spec.schema!r} is not on an interval grid")
    synth = _Synth(replace(spec, records=0, defects=Defects(), shapes=Shapes()))
    return int(synth.grid_offsets[-1])


def _is_zstd(path: Path) -> bool:
    return path.suffix == ".zst"


def write_dbn(spec: SynthSpec, path: Path | str, *, chunk_records: int = 1_000_000) -> SynthResult:
    """Generate `spec` and write it to `path` (zstd-compressed if the name ends in `.zst`).

    Records are generated in blocks of `BLOCK_RECORDS` and written once about `chunk_records`
    are buffered, so memory is bounded by max(chunk_records, BLOCK_RECORDS) records. The bytes
    written depend only on `spec`.
    """
    if chunk_records < 1:
        raise ValueError(f"chunk_records must be >= 1, got {chunk_records}")
    path = Path(path)
    synth = _Synth(spec)
    header = synth.metadata()
    with path.open("wb") as raw:
        if _is_zstd(path):
            compressor = zstandard.ZstdCompressor(level=3)
            with compressor.stream_writer(raw, closefd=False) as out:
                _write_records(out, header, synth.blocks(), chunk_records)
        else:
            _write_records(raw, header, synth.blocks(), chunk_records)
    return synth.result(path)


def _write_records(
    out: IO[bytes], header: bytes, blocks: Iterator[Records], chunk_records: int
) -> None:
    out.write(header)
    pending: list[Records] = []
    buffered = 0
    for block in blocks:
        pending.append(block)
        buffered += block.size
        if buffered >= chunk_records:
            _flush(out, pending)
            pending, buffered = [], 0
    _flush(out, pending)


def _flush(out: IO[bytes], pending: Sequence[Records]) -> None:
    for block in pending:
        out.write(block.view(np.uint8).data)
