"""Record builders of the reference schemas: statistics, status, imbalance and definitions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from histetl.synth.market import _Market
from histetl.synth.spec import (
    DAY_NS,
    FIXED,
    HOUR_NS,
    I64,
    MINUTE_NS,
    UNDEF_PRICE,
    UNDEF_TIMESTAMP,
    Records,
)
from histetl.synth.universe import (
    _PAIRED_STATS,
    _QUANTITY_STATS,
    _SIDES,
    _STAT_MIX,
    _STATUS_CYCLE,
    _choose,
)


class _Reference(_Market):
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
