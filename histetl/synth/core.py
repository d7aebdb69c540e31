"""The generator's shared machinery: the defect plan, the interval grid, the random walks and
sizes every schema uses, and the record templates."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import databento_dbn as dbn
import numpy as np
import numpy.typing as npt

from histetl.synth.spec import (
    _BBO,
    _OHLCV,
    DAY_NS,
    I64,
    UNDEF_PRICE,
    UNDEF_TIMESTAMP,
    Records,
    SynthResult,
    SynthSpec,
    record_class,
    record_dtype,
)
from histetl.synth.universe import _choose, _geometric, _rng, _sorted_quantiles, _Universe


class _Core(_Universe):
    def __init__(self, spec: SynthSpec) -> None:
        super().__init__(spec)
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

    def _local(self, name: str, a: int, b: int) -> I64:
        rows = self.plan[name]
        lo, hi = np.searchsorted(rows, [a, b])
        return np.asarray(rows[lo:hi] - a, dtype=np.int64)

    def _rank(self, name: str, a: int, local: I64) -> I64:
        """1-based rank of each row among all rows with this defect."""
        return np.searchsorted(self.plan[name], local + a).astype(np.int64) + 1

    def _tick_by_id(self, ids: npt.NDArray[Any]) -> I64:
        order = np.argsort(self.ids)
        pos = order[np.searchsorted(self.ids[order], ids.astype(np.int64))]
        return np.asarray(self.tick[pos], dtype=np.int64)
