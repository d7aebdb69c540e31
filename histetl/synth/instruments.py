"""Products, contracts and listings: the instruments a file's symbols resolve to, and the
structural symbology mappings of its metadata."""

from __future__ import annotations

import datetime as dt
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from databento_dbn.metadata import MappingInterval

from histetl.synth.spec import DAY_NS, FIXED, HOUR_NS, MINUTE_NS, UNDEF_TIMESTAMP

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
