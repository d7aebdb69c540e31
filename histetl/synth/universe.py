"""The generator's base: the spec's basics and the instrument universe its symbols resolve to,
with the metadata header."""

from __future__ import annotations

import datetime as dt
import math
import zlib
from typing import Final

import databento_dbn as dbn
import numpy as np
from databento_dbn.metadata import MappingInterval, SymbolMapping

from histetl.synth.calendar import _Calendar, _roll_day
from histetl.synth.instruments import (
    _CONTINUOUS_RE,
    _PARENT_RE,
    _chain,
    _Contract,
    _date_ns,
    _equity,
    _future_product,
    _Listing,
    _MappingInterval,
    _outright,
    _parse_future,
    _spread,
    _SymbolMapping,
    _third_friday,
)
from histetl.synth.spec import (
    _GRID_NS,
    DAY_NS,
    F64,
    I64,
    SynthSpec,
    _validate,
    index_field,
    record_class,
    record_dtype,
)

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


class _Universe:
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
