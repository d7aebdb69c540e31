"""Record builders of the market-data schemas: trades, books (MBP, TBBO, CMBP), BBO/CBBO,
MBO and OHLCV bars."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from histetl.synth.core import _Core
from histetl.synth.spec import (
    _CONSOLIDATED,
    _TRADE_SPACE,
    DAY_NS,
    F_LAST,
    I64,
    NS,
    UNDEF_PRICE,
    Records,
)
from histetl.synth.universe import _SIDES, _bucket, _geometric


class _Market(_Core):
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
