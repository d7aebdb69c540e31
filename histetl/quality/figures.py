"""Data-quality figures, accumulated batch by batch while a file streams through the pipeline.

Every accumulator keeps small aggregates: counts per hour and symbol, latency histograms per
hour, the longest silence and the last record per instrument, the few largest price jumps, the
symbols seen per day. Their size follows the file's time span and instrument count, never its
row count, so memory stays bounded by the batch size. Nothing is decoded twice: the pipeline
hands each batch's valid rows and quarantined rows (with `rules_broken`) to `ReportObserver`.

Definitions (also in the README):

- volume: records per UTC hour and symbol (every decoded record, quarantined ones included);
  traded size from the valid rows (trades and tbbo: `size`; mbp-1/mbo: `size` of action T;
  bars: `volume`).
- latency: `ts_recv - ts_event` of every record, counted in log-linear buckets (8 per
  doubling, as in HDR histograms), so a percentile is exact to within 12.5% (the bucket's upper
  edge is shown).
- books: per hour, rows with both sides priced where bid > ask (crossed) or bid == ask (locked),
  quarantined rows included (crossed quotes break `quote_not_crossed`).
- holes: per instrument, the longest silence between consecutive valid records in file order,
  counted only inside trading sessions of the calendar `verify` uses (`calendar_for`); for bar
  schemas also the bars missing inside sessions. The time before a file's first and after its
  last record is not seen.
- prices: per instrument, a jump is a change between consecutive valid trade prices (bar
  closes) larger than `jump_k` x the median absolute change of the previous `mad_window`
  changes, or larger than `jump_ticks` ticks (tick: the smallest non-zero change seen).
- sequence: per publisher and instrument, steps where `sequence` went down (regressions) or up
  by more than one (gaps; normal where a venue numbers a whole channel, like CME).
- symbology: symbols per UTC day; instrument ids of rows without a symbol.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise
from typing import Any, overload

import numpy as np
import numpy.typing as npt
import polars as pl

from histetl.quality.aggregates import (
    LAT_BUCKETS,
    SUB_BITS,
    Sums,
    ascending,
    ints,
)
from histetl.quality.results import figures_dict, series_dict
from histetl.quality.series import (
    I64,
    Registry,
    Series,
    Traded,
    _decimal,
    instrument_groups,
)
from histetl.read.calendars import Calendar, calendar_for
from histetl.schemas import HASH_COLUMN, SYMBOL_COLUMN, TableSpec
from histetl.validate import RULES_COLUMN

HOUR_NS = 3_600 * 10**9
DAY_NS = 24 * HOUR_NS
_BAR_NS = {"ohlcv-1s": 10**9, "ohlcv-1m": 60 * 10**9, "ohlcv-1h": HOUR_NS, "ohlcv-1d": DAY_NS}


@dataclass(frozen=True)
class FigureOptions:
    jump_k: float = 10.0
    jump_ticks: int = 50
    mad_window: int = 50
    max_listed: int = 25  # jumps, holes, regressions listed (the counts are exact)
    samples: int = 3  # quarantined rows shown per rule


def _ns(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Int64)


class TableFigures:
    """The figures of one file, or of a table (several files merged)."""

    def __init__(self, spec: TableSpec, dataset: str, options: FigureOptions) -> None:
        self.spec, self.dataset, self.options = spec, dataset, options
        self.ts = spec.index_ts
        names = set(spec.column_names)
        self.has_latency = {"ts_recv", "ts_event"} <= names and self.ts == "ts_recv"
        self.has_book = {"bid_px_00", "ask_px_00"} <= names
        self.has_sequence = "sequence" in names and spec.schema != "definition"
        self.bar_ns = _BAR_NS.get(spec.schema)
        self.price_col = (
            "close" if self.bar_ns else "price" if spec.schema in _TRADED_PRICE else None
        )
        self.calendar: Calendar | None = calendar_for("auto", [dataset])
        self.instruments = Registry()  # (publisher_id, instrument_id)
        self.codes = Registry()  # (publisher_id, instrument_id, UTC day): one symbol each
        self.code_pub = np.empty(0, dtype=np.int64)
        self.code_iid = np.empty(0, dtype=np.int64)
        self.code_inst = np.empty(0, dtype=np.int64)
        self.code_symbol: list[str | None] = []
        self._day_code: dict[tuple[int, int], int] = {}  # (instrument key, UTC day) -> code
        self.inst_symbol: list[str | None] = []
        self.volume = Sums(
            ["hour", "publisher_id", "instrument_id", "symbol"], {"records": "sum", "size": "sum"}
        )
        self.latency = Sums(["hour", "bucket"], {"n": "sum"})
        self.books = Sums(["hour"], {"quotes": "sum", "crossed": "sum", "locked": "sum"})
        self.lat_max: int | None = None
        self.lat_min: int | None = None
        self.untimed = 0  # records without an index timestamp
        self.samples: dict[str, list[dict[str, str]]] = {}
        self.series = Series(self)
        self.merged: list[dict[str, Any]] = []  # series figures of files merged in

    # -- per batch ----------------------------------------------------------------------------
    def add(self, valid: pl.DataFrame, invalid: pl.DataFrame) -> None:
        if valid.height:
            self._add(valid, True)
        if invalid.height:
            self._add(invalid, False)
            self._samples(invalid)

    def _add(self, frame: pl.DataFrame, is_valid: bool) -> None:
        ts = frame.get_column(self.ts)
        if ts.null_count():
            self.untimed += ts.null_count()
            frame = frame.filter(pl.col(self.ts).is_not_null())
            if not frame.height:
                return
            ts = frame.get_column(self.ts)
        t = ints(ts)
        ordered = ascending(t)
        first, last = (t[0], t[-1]) if ordered else (t.min(), t.max())
        h0, h1 = int(first) // HOUR_NS, int(last) // HOUR_NS
        if h1 - h0 > _MAX_HOURS:  # stray timestamps far apart: one UTC day at a time
            days = frame.with_columns((_ns(self.ts) // DAY_NS).alias("_day"))
            for part in days.partition_by("_day", include_key=False):
                self._add(part, is_valid)
            return
        hours = _Hours(t, h0, h1 - h0 + 1, ordered)
        self._hourly(frame, hours)
        size = self._traded_size(frame) if is_valid else None
        cols = self._traded(frame) if is_valid else None
        pub, iid = (
            frame.get_column("publisher_id").to_numpy(),
            frame.get_column("instrument_id").to_numpy(),
        )
        groups = instrument_groups(pub, iid)
        if groups is None:  # many instruments: a key per row
            per_row = self._codes(frame, t, pub, iid)
            self._volume(per_row, hours, size)
            if cols is not None:
                self.series.add(t, self.code_inst[per_row], len(self.instruments), cols)
            return
        # a few instruments: one at a time, rows in file order, state per instrument a scalar
        keys = np.array([key for key, _ in groups], dtype=np.uint64)
        inst, _ = self.instruments.lookup(keys)  # new ones in order of first appearance
        for k in np.argsort(inst):  # in instrument order, as when sorted by instrument
            key, rows = groups[k]
            sub_t = _take(t, rows)
            code = self._instrument_codes(frame, rows, key, sub_t, ordered)
            self._volume(code, hours.take(rows, sub_t), _take(size, rows))
            if cols is not None:
                self.series.add_one(int(inst[k]), sub_t, cols.take(rows), len(self.instruments))

    def _codes(
        self, frame: pl.DataFrame, t: I64, pub: npt.NDArray[Any], iid: npt.NDArray[Any]
    ) -> I64:
        """Per row, the index of its (publisher, instrument, UTC day)."""
        inst_key = (pub.astype(np.uint64) << np.uint64(32)) | iid.astype(np.uint64)
        day_key = ((t // DAY_NS).astype(np.uint64) & np.uint64(0xFFFF)) << np.uint64(48)
        code, first = self.codes.lookup(inst_key | day_key)
        if len(first):
            self._register(frame, first, inst_key[first])
        return code

    def _instrument_codes(
        self, frame: pl.DataFrame, rows: I64 | None, key: int, t: I64, ordered: bool
    ) -> I64 | int:
        """The same for the rows of one instrument (`rows` of the frame; None: all of them);
        one code for all of them when they lie in one UTC day."""
        first, last = (t[0], t[-1]) if ordered else (t.min(), t.max())
        d0, d1 = int(first) // DAY_NS, int(last) // DAY_NS
        if d0 == d1 and (key, d0) in self._day_code:
            return self._day_code[key, d0]
        day = None if d0 == d1 else t // DAY_NS - d0
        present = np.zeros(1, np.int64) if day is None else np.flatnonzero(np.bincount(day))
        keys = np.uint64(key) | ((present + d0).astype(np.uint64) & np.uint64(0xFFFF)) << np.uint64(
            48
        )
        codes, new = self.codes.lookup(keys)
        if len(new):
            first = (
                new
                if day is None
                else np.array([int(np.argmax(day == present[j])) for j in new], dtype=np.int64)
            )
            at = first if rows is None else rows[first]
            self._register(frame, at, np.full(len(new), key, dtype=np.uint64))
        if day is None:
            self._day_code[key, d0] = int(codes[0])
            return int(codes[0])
        per_day = np.zeros(d1 - d0 + 1, dtype=np.int64)
        per_day[present] = codes
        return per_day[day]

    def _register(self, frame: pl.DataFrame, rows: I64, inst_key: npt.NDArray[np.uint64]) -> None:
        """New codes, first seen at `rows`: their instrument, ids and symbol."""
        inst, _ = self.instruments.lookup(inst_key)
        column = frame[SYMBOL_COLUMN]
        # one by one is faster for a few rows (gather takes ~0.3 ms on 100k strings)
        symbols = (
            column.gather(rows).to_list() if len(rows) > 64 else [column[int(r)] for r in rows]
        )
        self.code_pub = np.append(self.code_pub, (inst_key >> np.uint64(32)).astype(np.int64))
        self.code_iid = np.append(
            self.code_iid, (inst_key & np.uint64(0xFFFFFFFF)).astype(np.int64)
        )
        self.code_inst = np.append(self.code_inst, inst)
        self.code_symbol.extend(symbols)
        self.inst_symbol.extend([None] * (len(self.instruments) - len(self.inst_symbol)))
        for k, symbol in zip(inst.tolist(), symbols, strict=True):
            if symbol is not None:
                self.inst_symbol[k] = symbol

    def _volume(self, code: I64 | int, hours: _Hours, size: npt.NDArray[Any] | None) -> None:
        """Records and traded size per hour and code (one code: `code` an int)."""
        nh = hours.n
        records: npt.NDArray[Any]
        sizes: npt.NDArray[Any]
        if isinstance(code, int) and (hours.ordered or nh == 1):
            # one instrument-day, rows in time order (the usual batch): counts and sums per
            # hour from the hour boundaries, no per-row key
            present: I64 | None = np.array([code], dtype=np.int64)
            if nh == 1:  # one hour: no boundaries, in any order
                records = np.array([len(hours.t)], dtype=np.int64)
                sizes = np.zeros(1) if size is None else size.sum(dtype=_exact(size), keepdims=True)
                nz = np.zeros(1, dtype=np.int64)
                self._volume_rows(nz, present, nh, hours.h0, records, sizes)
                return
            bounds = hours.bounds()
            records = np.diff(bounds)
            sizes = np.zeros(nh, dtype=np.float64)
            if size is not None:
                some = np.flatnonzero(records)
                sizes = np.zeros(nh, dtype=_exact(size))
                sizes[some] = np.add.reduceat(size, bounds[some], dtype=_exact(size))
        else:
            if isinstance(code, int):
                code = np.full(len(hours.t), code, dtype=np.int64)
            present, local = np.unique(code, return_inverse=True) if len(self.codes) > 64 else (
                None, code
            )  # fmt: skip
            width = len(present) if present is not None else len(self.codes)
            key = local * nh + hours.rel
            records = np.bincount(key, minlength=width * nh)
            sizes = (
                np.bincount(key, weights=size, minlength=width * nh)
                if size is not None
                else np.zeros(len(records))
            )
        self._volume_rows(np.flatnonzero(records), present, nh, hours.h0, records, sizes)

    def _volume_rows(
        self,
        nz: I64,
        present: I64 | None,
        nh: int,
        h0: int,
        records: npt.NDArray[Any],
        sizes: npt.NDArray[Any],
    ) -> None:
        """The non-zero cells `nz` (code x hour) of a batch's counts, to the volume sums."""
        codes = nz // nh if present is None else present[nz // nh]
        self.volume.add(
            {
                "hour": nz % nh + h0,
                "publisher_id": self.code_pub[codes],
                "instrument_id": self.code_iid[codes],
                "symbol": [self.code_symbol[c] for c in codes],
                "records": records[nz].astype(np.int64),
                "size": sizes[nz].astype(np.int64),
            }
        )

    def _hourly(self, frame: pl.DataFrame, hours: _Hours) -> None:
        """Latency and books per hour, whatever the instrument."""
        h0, nh = hours.h0, hours.n
        if self.has_latency:
            lat = ints(frame.get_column("ts_recv")) - ints(frame.get_column("ts_event"))
            self.lat_max = max(
                int(lat.max()), self.lat_max if self.lat_max is not None else -(2**63)
            )
            low = int(lat.min())
            self.lat_min = min(low, self.lat_min if self.lat_min is not None else 2**63)
            # the float's exponent and top mantissa bits: octave and sub-bucket of lat > 0,
            # shifted by 2 (bucket 0: negative, 1: zero); in place, np.where is 10x slower
            bucket = lat.astype(np.float64).view(np.int64)
            bucket >>= 52 - SUB_BITS
            bucket -= (1023 << SUB_BITS) - 2
            if low <= 0:  # negative lat has the sign bit: very negative
                np.maximum(bucket, 0, out=bucket)
                bucket += lat == 0
            if nh == 1:
                hist = np.bincount(bucket, minlength=LAT_BUCKETS)
            elif hours.ordered and nh <= 24:  # a histogram per hour's rows: no per-row key
                hist = np.concatenate(
                    [
                        np.bincount(bucket[a:b], minlength=LAT_BUCKETS)
                        for a, b in pairwise(hours.bounds())
                    ]
                )
            else:
                bucket += hours.rel * LAT_BUCKETS
                hist = np.bincount(bucket, minlength=nh * LAT_BUCKETS)
            nz = np.flatnonzero(hist)
            self.latency.add(
                {"hour": nz // LAT_BUCKETS + h0, "bucket": (nz % LAT_BUCKETS - 2).astype(np.int32),
                 "n": hist[nz].astype(np.int64)}
            )  # fmt: skip
        if self.has_book:
            bid, bid_ok = _decimal(frame.get_column("bid_px_00"))
            ask, ask_ok = _decimal(frame.get_column("ask_px_00"))
            both = bid_ok & ask_ok
            flags = (both, both & (bid > ask), both & (bid == ask))
            if nh == 1 or (hours.ordered and nh <= 24):  # per hour's rows: no per-row key
                cuts = [(0, len(hours.t))] if nh == 1 else list(pairwise(hours.bounds().tolist()))
                counts = [np.array([np.count_nonzero(w[a:b]) for a, b in cuts]) for w in flags]
            else:
                counts = [
                    np.bincount(hours.rel, weights=w, minlength=nh).astype(np.int64) for w in flags
                ]
            quoted = np.flatnonzero(counts[0])
            self.books.add(
                {"hour": quoted + h0, "quotes": counts[0][quoted], "crossed": counts[1][quoted],
                 "locked": counts[2][quoted]}
            )  # fmt: skip

    def _traded_size(self, frame: pl.DataFrame) -> npt.NDArray[Any] | None:
        """Per row, its traded size (integers; floats when the column has nulls)."""
        schema = self.spec.schema
        if schema in ("trades", "tbbo"):
            return frame.get_column("size").to_numpy()
        if schema in ("mbp-1", "mbp-10", "mbo"):
            size = frame.get_column("size").to_numpy()
            mask = self.trade_mask(frame)
            return size * mask if mask is not None else size
        if self.bar_ns or schema == "ohlcv-eod":
            return frame.get_column("volume").to_numpy()
        return None

    def _traded(self, frame: pl.DataFrame) -> Traded:
        """The columns of the price and sequence figures."""
        prices = keep = seq = None
        if self.price_col is not None:
            mask = self.trade_mask(frame)
            prices, valid = _decimal(frame.get_column(self.price_col))
            keep = valid if mask is None else valid & mask
            keep = None if keep.all() else keep
        if self.has_sequence:
            seq = frame.get_column("sequence").to_numpy().astype(np.int64)
        return Traded(prices, keep, seq)

    def trade_mask(self, frame: pl.DataFrame) -> npt.NDArray[np.bool_] | None:
        """Rows that are trades (mbp-1/mbp-10/mbo: action T); None: every row."""
        if self.spec.schema in ("mbp-1", "mbp-10", "mbo"):
            return (frame.get_column("action") == "T").to_numpy()
        return None

    def _samples(self, invalid: pl.DataFrame) -> None:
        need = self.options.samples
        for name in invalid[RULES_COLUMN].explode().drop_nulls().unique().sort().to_list():
            have = self.samples.setdefault(name, [])
            if len(have) >= need:
                continue
            rows = invalid.filter(pl.col(RULES_COLUMN).list.contains(name)).head(need - len(have))
            shown = rows.drop(RULES_COLUMN, HASH_COLUMN, strict=False)
            have.extend(_json_row(r) for r in shown.iter_rows(named=True))

    # -- merging and size ----------------------------------------------------------------------
    def merge(self, other: TableFigures) -> None:
        for name in ("volume", "latency", "books"):
            getattr(self, name).merge(getattr(other, name))
        for rule, rows in other.samples.items():
            have = self.samples.setdefault(rule, [])
            have.extend(rows[: max(0, self.options.samples - len(have))])
        for value, pick in ((other.lat_max, max), (other.lat_min, min)):
            attr = "lat_max" if pick is max else "lat_min"
            mine = getattr(self, attr)
            if value is not None:
                setattr(self, attr, value if mine is None else pick(mine, value))
        self.untimed += other.untimed
        self.merged.append(series_dict(other))
        self.merged.extend(other.merged)

    def state_rows(self) -> int:
        """Rows held by every aggregate (for the bounded-memory test)."""
        sums = (self.volume, self.latency, self.books)
        for s in sums:
            s.compact()
        return sum(s.rows for s in sums) + len(self.codes) + self.series.rows

    # -- results ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return figures_dict(self)

    # -- sessions -----------------------------------------------------------------------------
    def sessions(self, lo: int, hi: int) -> I64:
        """Trading-session [open, close) ns ranges covering [lo, hi] (everything when the
        dataset has no known calendar)."""
        if self.calendar is None:
            return np.array([[lo, hi + 1]], dtype=np.int64)
        day_lo, day_hi = lo // DAY_NS, hi // DAY_NS + 1
        cached = self._sessions
        if cached is None or day_lo < cached[0] or day_hi > cached[1]:
            if cached is not None:
                day_lo, day_hi = min(day_lo, cached[0]), max(day_hi, cached[1])
            ranges = self.calendar.ranges(day_lo * DAY_NS, day_hi * DAY_NS)
            self._sessions = cached = (day_lo, day_hi, ranges)
        return cached[2]

    _sessions: tuple[int, int, I64] | None = None


_TRADED_PRICE = frozenset({"trades", "tbbo", "mbp-1", "mbp-10", "mbo"})
_MAX_HOURS = 24 * 62  # hours one batch may span before it is taken a day at a time


def _exact(size: npt.NDArray[Any]) -> type[np.int64] | type[np.float64]:
    """The dtype that sums traded sizes exactly (floats: a column with nulls)."""
    return np.int64 if size.dtype.kind in "iub" else np.float64


@overload
def _take(values: npt.NDArray[Any], rows: I64 | None) -> npt.NDArray[Any]: ...
@overload
def _take(values: None, rows: I64 | None) -> None: ...
def _take(values: npt.NDArray[Any] | None, rows: I64 | None) -> npt.NDArray[Any] | None:
    return values if values is None or rows is None else np.take(values, rows)


@dataclass(frozen=True)
class _Hours:
    """The UTC hours of a batch's rows (timestamps `t`): `n` hours from hour `h0`;
    `ordered`: rows in time order."""

    t: I64
    h0: int
    n: int
    ordered: bool

    @cached_property
    def rel(self) -> I64:
        """Per row, hours since `h0`."""
        rel = self.t // HOUR_NS
        rel -= self.h0
        return rel

    def bounds(self) -> I64:
        """Where each hour's rows begin (rows in time order), and the end."""
        return np.searchsorted(self.t, (self.h0 + np.arange(self.n + 1)) * HOUR_NS)

    def take(self, rows: I64 | None, t: I64) -> _Hours:
        """The hours of `rows` (their timestamps `t`)."""
        return self if rows is None else _Hours(t, self.h0, self.n, self.ordered)


def _json_row(row: dict[str, Any]) -> dict[str, str]:
    return {k: ("" if v is None else str(v)) for k, v in row.items()}
