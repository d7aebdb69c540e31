"""What to generate (`SynthSpec`, `Defects`, `Shapes`), what was generated (`SynthResult`),
and the constants of the record layouts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

import databento_dbn as dbn
import numpy as np
import numpy.typing as npt
from databento_dbn import v1 as dbn_v1
from databento_dbn import v2 as dbn_v2
from databento_dbn import v3 as dbn_v3

from histetl.dbn import RECORDS, SUPPORTED_SCHEMAS

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
_VERSION_MODULES: Final[dict[int, Any]] = {1: dbn_v1, 2: dbn_v2, 3: dbn_v3}
_STYPES_IN: Final = ("continuous", "raw_symbol", "parent")

# -- public helpers -------------------------------------------------------------------------


def record_class(schema: str, version: int = 3) -> Any:
    """The `databento_dbn` record class of `schema` in DBN `version` (1, 2 or 3)."""
    if schema not in RECORDS:
        raise ValueError(f"unsupported schema {schema!r}; expected one of {SUPPORTED_SCHEMAS}")
    if version not in _VERSION_MODULES:
        raise ValueError(f"unsupported DBN version {version!r}; expected 1, 2 or 3")
    return getattr(_VERSION_MODULES[version], RECORDS[schema][0])


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
