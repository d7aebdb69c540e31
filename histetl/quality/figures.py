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
- latency: `ts_recv - ts_event` of every record, counted in buckets of 1/8 octave of log2(ns),
  so a percentile is exact to within 9% (the bucket's upper edge is shown).
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

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from histetl.report import FileReport
from histetl.schemas import HASH_COLUMN, SYMBOL_COLUMN, TableSpec
from histetl.validate import RULES_COLUMN, RuleBook
from histetl.verify import Calendar, buckets, calendar_for, covered

HOUR_NS = 3_600 * 10**9
DAY_NS = 24 * HOUR_NS
OCTAVE_STEPS = 8  # latency buckets per doubling
NO_SYMBOL = "(no symbol)"
_BAR_NS = {"ohlcv-1s": 10**9, "ohlcv-1m": 60 * 10**9, "ohlcv-1h": HOUR_NS, "ohlcv-1d": DAY_NS}
_COMPACT_AT = 32  # partial aggregates kept before they are folded together


@dataclass(frozen=True)
class FigureOptions:
    jump_k: float = 10.0
    jump_ticks: int = 50
    mad_window: int = 50
    max_listed: int = 25  # jumps, holes, regressions listed (the counts are exact)
    samples: int = 3  # quarantined rows shown per rule
    max_unmapped_ids: int = 1_000


class _Sums:
    """Partial group-by aggregates, folded together now and then: sums, mins and maxes."""

    def __init__(self, keys: Sequence[str], how: dict[str, str]) -> None:
        self.keys, self.how = list(keys), how
        self.parts: list[pl.DataFrame] = []

    def add(self, part: pl.DataFrame) -> None:
        if part.height:
            self.parts.append(part)
            if len(self.parts) >= _COMPACT_AT:
                self.compact()

    def merge(self, other: _Sums) -> None:
        for part in other.parts:
            self.add(part)

    def compact(self) -> pl.DataFrame:
        if not self.parts:
            return pl.DataFrame()
        frame = pl.concat(self.parts, how="vertical_relaxed")
        if len(self.parts) > 1:
            aggs = [getattr(pl.col(c), how)().alias(c) for c, how in self.how.items()]
            frame = frame.group_by(self.keys).agg(aggs)
        self.parts = [frame.sort(self.keys, nulls_last=True)]
        return self.parts[0]

    @property
    def rows(self) -> int:
        return sum(p.height for p in self.parts)


def _ns(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Int64)


def _symbol() -> pl.Expr:
    return pl.col(SYMBOL_COLUMN).fill_null(NO_SYMBOL)


def _float(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Float64)


class TableFigures:
    """The figures of one file, or of a table (several files merged)."""

    def __init__(self, spec: TableSpec, dataset: str, options: FigureOptions) -> None:
        self.spec, self.dataset, self.options = spec, dataset, options
        self.ts = spec.index_ts
        names = set(spec.column_names)
        self.has_latency = {"ts_recv", "ts_event"} <= names
        self.has_book = {"bid_px_00", "ask_px_00"} <= names
        self.has_sequence = {"sequence", "publisher_id"} <= names and spec.schema != "definition"
        self.bar_ns = _BAR_NS.get(spec.schema)
        self.price_col = (
            "close" if self.bar_ns else "price" if spec.schema in _TRADED_PRICE else None
        )
        self.calendar: Calendar | None = calendar_for("auto", [dataset])
        self.volume = _Sums(["hour", "symbol"], {"records": "sum", "size": "sum"})
        self.latency = _Sums(["hour", "bucket"], {"n": "sum"})
        self.latency_max = _Sums(["hour"], {"max_ns": "max", "min_ns": "min"})
        self.books = _Sums(["hour"], {"quotes": "sum", "crossed": "sum", "locked": "sum"})
        self.days = _Sums(["day", "symbol"], {"records": "sum"})
        self.unmapped = _Sums(["instrument_id"], {"records": "sum"})
        self.samples: dict[str, list[dict[str, str]]] = {}
        self.holes = _Holes(self)
        self.prices = _Jumps(self)
        self.sequence = _Sequence(self)

    # -- per batch ----------------------------------------------------------------------------
    def add(self, valid: pl.DataFrame, invalid: pl.DataFrame) -> None:
        for frame, is_valid in ((valid, True), (invalid, False)):
            if frame.height:
                self._counts(frame, is_valid)
        if invalid.height:
            self._samples(invalid)
        if valid.height:
            self.holes.add(valid)
            if self.price_col is not None:
                self.prices.add(valid)
            if self.has_sequence:
                self.sequence.add(valid)

    def _counts(self, frame: pl.DataFrame, is_valid: bool) -> None:
        hour = (_ns(self.ts) // HOUR_NS).alias("hour")
        size = _traded_size(self.spec.schema) if is_valid else None
        self.volume.add(
            frame.group_by(hour, _symbol().alias("symbol")).agg(
                pl.len().cast(pl.Int64).alias("records"),
                (size if size is not None else pl.lit(0)).cast(pl.Int64).alias("size"),
            )
        )
        self.days.add(
            frame.group_by((_ns(self.ts) // DAY_NS).alias("day"), _symbol().alias("symbol")).agg(
                pl.len().cast(pl.Int64).alias("records")
            )
        )
        self.unmapped.add(
            frame.filter(pl.col(SYMBOL_COLUMN).is_null())
            .group_by("instrument_id")
            .agg(pl.len().cast(pl.Int64).alias("records"))
        )
        if self.unmapped.rows > 10 * self.options.max_unmapped_ids:
            top = self.unmapped.compact().sort("records", descending=True)
            self.unmapped.parts = [top.head(self.options.max_unmapped_ids)]
            self.unmapped_truncated = True
        if self.has_latency:
            lat = (_ns("ts_recv") - _ns("ts_event")).alias("lat")
            lats = frame.select(hour, lat).drop_nulls()
            bucket = (
                pl.when(pl.col("lat") > 0)
                .then((pl.col("lat").cast(pl.Float64).log(2) * OCTAVE_STEPS).floor())
                .when(pl.col("lat") == 0)
                .then(-1)
                .otherwise(-2)
                .cast(pl.Int32)
                .alias("bucket")
            )
            self.latency.add(lats.group_by("hour", bucket).agg(pl.len().cast(pl.Int64).alias("n")))
            self.latency_max.add(
                lats.group_by("hour").agg(
                    pl.col("lat").max().alias("max_ns"), pl.col("lat").min().alias("min_ns")
                )
            )
        if self.has_book:
            bid, ask = pl.col("bid_px_00"), pl.col("ask_px_00")
            both = bid.is_not_null() & ask.is_not_null()
            self.books.add(
                frame.group_by(hour).agg(
                    both.sum().cast(pl.Int64).alias("quotes"),
                    (both & (bid > ask)).sum().cast(pl.Int64).alias("crossed"),
                    (both & (bid == ask)).sum().cast(pl.Int64).alias("locked"),
                )
            )

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
        for name in ("volume", "latency", "latency_max", "books", "days", "unmapped"):
            getattr(self, name).merge(getattr(other, name))
        for rule, rows in other.samples.items():
            have = self.samples.setdefault(rule, [])
            have.extend(rows[: max(0, self.options.samples - len(have))])
        self.holes.merge(other.holes)
        self.prices.merge(other.prices)
        self.sequence.merge(other.sequence)

    def state_rows(self) -> int:
        """Rows held by every aggregate (for the bounded-memory test)."""
        sums = (self.volume, self.latency, self.latency_max, self.books, self.days, self.unmapped)
        for s in sums:
            s.compact()
        return sum(s.rows for s in sums) + self.holes.rows + self.prices.rows + self.sequence.rows

    # -- results ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "volume": _records(self.volume.compact()),
            "latency": self._latency(),
            "books": _records(self.books.compact()) if self.has_book else None,
            "holes": self.holes.to_dict(),
            "prices": self.prices.to_dict() if self.price_col else None,
            "sequence": self.sequence.to_dict() if self.has_sequence else None,
            "symbology": self._symbology(),
            "samples": self.samples,
        }

    def _latency(self) -> dict[str, Any] | None:
        if not self.has_latency:
            return None
        hist = self.latency.compact()
        extremes = self.latency_max.compact()
        hours = []
        if hist.height:
            for (hour,), part in hist.partition_by("hour", as_dict=True).items():
                hours.append({"hour": hour, **_percentiles(part["bucket"], part["n"])})
            hours.sort(key=lambda h: (h["hour"] is None, h["hour"] or 0))
            overall = hist.group_by("bucket").agg(pl.col("n").sum())
            total = _percentiles(overall["bucket"], overall["n"])
        else:
            total = _percentiles(pl.Series([], dtype=pl.Int32), pl.Series([], dtype=pl.Int64))
        return {
            "bucket_width": f"1/{OCTAVE_STEPS} octave of log2(ns)",
            "per_hour": hours,
            "overall": total,
            "max_ns": int(extremes["max_ns"].max()) if extremes.height else None,  # type: ignore[arg-type]
            "min_ns": int(extremes["min_ns"].min()) if extremes.height else None,  # type: ignore[arg-type]
            "histogram": _records(hist),
        }

    def _symbology(self) -> dict[str, Any]:
        days = self.days.compact()
        per_day: list[dict[str, Any]] = []
        if days.height:
            mapped = days.filter(pl.col("symbol") != NO_SYMBOL)
            for day in sorted(days["day"].drop_nulls().unique().to_list()):
                symbols = sorted(mapped.filter(pl.col("day") == day)["symbol"].to_list())
                per_day.append({"day": _day(day), "symbols": symbols})
        prev: set[str] | None = None
        for entry in per_day:
            now = set(entry["symbols"])
            entry["new"] = sorted(now - prev) if prev is not None else None
            entry["missing"] = sorted(prev - now) if prev is not None else None
            prev = now
        unmapped = self.unmapped.compact()
        unmapped = unmapped.sort("records", descending=True) if unmapped.height else unmapped
        return {
            "per_day": per_day,
            "unmapped_rows": int(unmapped["records"].sum()) if unmapped.height else 0,
            "unmapped_ids": _records(unmapped.head(self.options.max_listed)),
            "unmapped_id_count": unmapped.height,
            "unmapped_ids_truncated": getattr(self, "unmapped_truncated", False),
        }

    # -- sessions -----------------------------------------------------------------------------
    def sessions(self, lo: int, hi: int) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Trading-session [open, close) ns ranges covering [lo, hi] (everything when the
        dataset has no known calendar)."""
        if self.calendar is None:
            return np.array([[lo, hi + 1]], dtype=np.int64)
        day_lo, day_hi = lo // DAY_NS, hi // DAY_NS + 1
        cached = getattr(self, "_sessions", None)
        if cached is None or day_lo < cached[0] or day_hi > cached[1]:
            if cached is not None:
                day_lo, day_hi = min(day_lo, cached[0]), max(day_hi, cached[1])
            ranges = self.calendar.ranges(day_lo * DAY_NS, day_hi * DAY_NS)
            self._sessions = cached = (day_lo, day_hi, ranges)
        return cached[2]  # type: ignore[no-any-return]


_TRADED_PRICE = frozenset({"trades", "tbbo", "mbp-1", "mbp-10", "mbo"})


def _traded_size(schema: str) -> pl.Expr | None:
    if schema in ("trades", "tbbo"):
        return pl.col("size").sum()
    if schema in ("mbp-1", "mbp-10", "mbo"):
        return pl.col("size").filter(pl.col("action") == "T").sum()
    if schema in _BAR_NS or schema == "ohlcv-eod":
        return pl.col("volume").sum()
    return None


def _trade_rows(schema: str) -> pl.Expr:
    if schema in ("mbp-1", "mbp-10", "mbo"):
        return pl.col("action") == "T"
    return pl.lit(True)


class _Holes:
    """Longest in-session silence per instrument; bars missing inside sessions for bars."""

    def __init__(self, figures: TableFigures) -> None:
        self.f = figures
        self.last = pl.DataFrame(schema={"instrument_id": pl.UInt32, "t": pl.Int64})
        self.best = pl.DataFrame(
            schema={
                "instrument_id": pl.UInt32,
                "symbol": pl.String,
                "silence_ns": pl.Int64,
                "from_ns": pl.Int64,
                "to_ns": pl.Int64,
            }
        )
        self.bars = _Sums(["instrument_id", "symbol"], {"missing": "sum", "holes": "sum"})

    @property
    def rows(self) -> int:
        return self.last.height + self.best.height + self.bars.rows

    def add(self, valid: pl.DataFrame) -> None:
        f = self.f
        batch = valid.select(
            pl.col("instrument_id"), _symbol().alias("symbol"), _ns(f.ts).alias("t")
        ).drop_nulls("t")
        if not batch.height:
            return
        last = self.last.with_columns(pl.lit(None, pl.String).alias("symbol")).select(batch.columns)
        both = pl.concat([last, batch], how="vertical_relaxed")
        steps = both.with_columns(pl.col("t").shift(1).over("instrument_id").alias("prev"))
        steps = steps.filter(pl.col("prev").is_not_null() & (pl.col("t") > pl.col("prev")))
        self.last = both.group_by("instrument_id").agg(pl.col("t").last())
        # a session silence is never longer than the raw one: only steps longer than the
        # shortest best silence so far can matter (when every instrument has one)
        floor = 0
        ids = set(batch["instrument_id"].unique().to_list())
        if self.best.height and ids <= set(self.best["instrument_id"].to_list()):
            floor = int(self.best["silence_ns"].min())  # type: ignore[arg-type]
        candidates = steps.filter(pl.col("t") - pl.col("prev") > floor)
        if f.bar_ns is not None:
            self._bars(steps, f.bar_ns)
        if not candidates.height:
            return
        lo, hi = candidates["prev"].to_numpy(), candidates["t"].to_numpy()
        sessions = f.sessions(int(lo.min()), int(hi.max()))
        silence = covered(sessions, lo.astype(np.int64), hi.astype(np.int64))
        found = (
            candidates.with_columns(pl.Series("silence_ns", silence, dtype=pl.Int64))
            .filter(pl.col("silence_ns") > 0)
            .sort("silence_ns", descending=True)
            .group_by("instrument_id", maintain_order=True)
            .first()
            .select(
                "instrument_id",
                "symbol",
                "silence_ns",
                pl.col("prev").alias("from_ns"),
                pl.col("t").alias("to_ns"),
            )
        )
        self._keep(found)

    def _keep(self, found: pl.DataFrame) -> None:
        if not found.height:
            return
        self.best = (
            pl.concat([self.best, found], how="vertical_relaxed")
            .sort("silence_ns", descending=True)
            .group_by("instrument_id", maintain_order=True)
            .first()
        )

    def _bars(self, steps: pl.DataFrame, interval: int) -> None:
        gaps = steps.filter(pl.col("t") - pl.col("prev") > interval)
        if not gaps.height:
            return
        lo, hi = gaps["prev"].to_numpy().astype(np.int64), gaps["t"].to_numpy().astype(np.int64)
        grid = buckets(self.f.sessions(int(lo.min()), int(hi.max())), interval)
        missing = covered(grid, lo // interval + 1, hi // interval)
        self.bars.add(
            gaps.with_columns(pl.Series("missing", missing, dtype=pl.Int64))
            .filter(pl.col("missing") > 0)
            .group_by("instrument_id", "symbol")
            .agg(pl.col("missing").sum(), pl.len().cast(pl.Int64).alias("holes"))
        )

    def merge(self, other: _Holes) -> None:
        self._keep(other.best)
        self.bars.merge(other.bars)

    def to_dict(self) -> dict[str, Any]:
        f = self.f
        return {
            "calendar": f.calendar.name if f.calendar else None,
            "longest": _records(self.best.sort("silence_ns", descending=True)),
            "bar_interval_ns": f.bar_ns,
            "missing_bars": _records(self.bars.compact()) if f.bar_ns else None,
        }


class _Jumps:
    """Price jumps per instrument against a rolling median absolute change and the tick."""

    def __init__(self, figures: TableFigures) -> None:
        self.f = figures
        self.tail = pl.DataFrame(schema={"instrument_id": pl.UInt32, "t": pl.Int64, "p": pl.Float64})
        self.ticks: dict[int, float] = {}
        self.listed = pl.DataFrame()
        self.count = 0

    @property
    def rows(self) -> int:
        return self.tail.height + self.listed.height + len(self.ticks)

    def add(self, valid: pl.DataFrame) -> None:
        f, o = self.f, self.f.options
        assert f.price_col is not None
        batch = (
            valid.filter(_trade_rows(f.spec.schema))
            .select(
                pl.col("instrument_id"),
                _ns(f.ts).alias("t"),
                _float(f.price_col).alias("p"),
                _symbol().alias("symbol"),
            )
            .drop_nulls(["t", "p"])
        )
        if not batch.height:
            return
        tail = self.tail.with_columns(pl.lit(None, pl.String).alias("symbol"))
        both = (
            pl.concat([tail, batch], how="vertical_relaxed")
            .with_row_index("i")
            .sort("instrument_id", "i", maintain_order=True)
        )
        both = both.with_columns(
            (pl.col("p") - pl.col("p").shift(1).over("instrument_id")).abs().alias("d"),
            pl.col("p").shift(1).over("instrument_id").alias("prev_p"),
        )
        # tick: the smallest non-zero change seen up to each row (so the figures do not depend
        # on where batches end)
        seen = pl.col("instrument_id").replace_strict(
            self.ticks, default=None, return_dtype=pl.Float64
        )
        running = pl.when(pl.col("d") > 0).then(pl.col("d")).cum_min().forward_fill()
        both = both.with_columns(
            pl.min_horizontal(running.over("instrument_id"), seen).alias("tick")
        )
        self.tail = both.group_by("instrument_id", maintain_order=True).tail(o.mad_window + 1)
        self.tail = self.tail.select("instrument_id", "t", "p")
        for iid, tick in both.group_by("instrument_id").agg(pl.col("tick").min()).iter_rows():
            if tick is not None:
                self.ticks[iid] = tick
        limit = min(o.jump_k, o.jump_ticks) * pl.col("tick") * (1 + 1e-9)
        # A change beyond k x median change (when that median is non-zero, it is at least a
        # tick) is beyond k ticks: only rows beyond min(k, N) ticks need the rolling median.
        both = both.with_row_index("pos")
        candidates = both.filter(pl.col("d") > limit, pl.col("symbol").is_not_null())
        if not candidates.height:
            return
        d = both["d"].to_numpy(allow_copy=True).astype(np.float64)
        ids = both["instrument_id"].to_numpy()
        pos = candidates["pos"].to_numpy().astype(np.int64)
        mad = _rolling_median_at(d, ids, pos, o.mad_window)
        c = candidates.with_columns(pl.Series("mad", mad, dtype=pl.Float64))
        by_mad = (pl.col("mad") > 0) & (pl.col("d") > o.jump_k * pl.col("mad") * (1 + 1e-9))
        by_tick = pl.col("d") > o.jump_ticks * pl.col("tick") * (1 + 1e-9)
        jumps = c.filter(by_mad | by_tick).with_columns(
            (pl.col("d") / pl.col("tick")).alias("ticks"),
            pl.when(by_tick).then(pl.lit(f"> {o.jump_ticks} ticks")).otherwise(
                pl.lit(f"> {o.jump_k:g} x median change")
            ).alias("reason"),
        )
        self._keep(jumps.select("instrument_id", "symbol", "t", "prev_p", "p", "d", "ticks", "mad", "reason"))

    def _keep(self, jumps: pl.DataFrame) -> None:
        if not jumps.height:
            return
        self.count += jumps.height
        listed = pl.concat([self.listed, jumps], how="vertical_relaxed") if self.listed.height else jumps
        self.listed = listed.sort("ticks", descending=True).head(self.f.options.max_listed)

    def merge(self, other: _Jumps) -> None:
        count = self.count + other.count
        self._keep(other.listed)
        self.count = count

    def to_dict(self) -> dict[str, Any]:
        o = self.f.options
        return {
            "rule": f"|change| > {o.jump_k:g} x median |change| of the previous {o.mad_window}, "
            f"or > {o.jump_ticks} ticks",
            "count": self.count,
            "listed": _records(self.listed.sort("t")) if self.listed.height else [],
        }


def _rolling_median_at(d: np.ndarray[Any, Any], ids: np.ndarray[Any, Any], pos: np.ndarray[Any, Any], window: int) -> np.ndarray[Any, Any]:
    """Median of d[p-window:p] within the same instrument (rows sorted by instrument), for each
    p in pos; NaN when fewer than 10 previous changes."""
    out = np.full(len(pos), np.nan)
    for j, p in enumerate(pos):
        lo = max(0, p - window)
        same = ids[lo:p] == ids[p]
        values = d[lo:p][same]
        values = values[~np.isnan(values)]
        if len(values) >= 10:
            out[j] = float(np.median(values))
    return out


class _Sequence:
    """Sequence regressions and gaps per publisher and instrument, in file order."""

    def __init__(self, figures: TableFigures) -> None:
        self.f = figures
        self.last = pl.DataFrame(
            schema={"publisher_id": pl.UInt16, "instrument_id": pl.UInt32, "sequence": pl.Int64}
        )
        self.steps = _Sums(
            ["publisher_id", "instrument_id", "symbol"],
            {"steps": "sum", "regressions": "sum", "gaps": "sum", "largest_gap": "max"},
        )
        self.examples = pl.DataFrame()

    @property
    def rows(self) -> int:
        return self.last.height + self.steps.rows + self.examples.height

    def add(self, valid: pl.DataFrame) -> None:
        keys = ["publisher_id", "instrument_id"]
        batch = valid.select(
            *keys,
            pl.col("sequence").cast(pl.Int64),
            _symbol().alias("symbol"),
            _ns(self.f.ts).alias("t"),
        )
        last = self.last.with_columns(
            pl.lit(None, pl.String).alias("symbol"), pl.lit(None, pl.Int64).alias("t")
        ).select(batch.columns)
        both = pl.concat([last, batch], how="vertical_relaxed").with_columns(
            (pl.col("sequence") - pl.col("sequence").shift(1).over(keys)).alias("step"),
            pl.col("sequence").shift(1).over(keys).alias("prev"),
        )
        self.last = both.group_by(keys).agg(pl.col("sequence").last())
        steps = both.filter(pl.col("step").is_not_null() & pl.col("t").is_not_null())
        self.steps.add(
            steps.group_by(*keys, "symbol").agg(
                pl.len().cast(pl.Int64).alias("steps"),
                (pl.col("step") < 0).sum().cast(pl.Int64).alias("regressions"),
                (pl.col("step") > 1).sum().cast(pl.Int64).alias("gaps"),
                (pl.col("step").max() - 1).clip(0).alias("largest_gap"),
            )
        )
        if self.examples.height < self.f.options.max_listed:
            found = steps.filter(pl.col("step") < 0).head(self.f.options.max_listed)
            if found.height:
                found = found.select(*keys, "symbol", "t", "prev", "sequence")
                self.examples = (
                    pl.concat([self.examples, found], how="vertical_relaxed")
                    if self.examples.height
                    else found
                ).head(self.f.options.max_listed)

    def merge(self, other: _Sequence) -> None:
        self.steps.merge(other.steps)
        if other.examples.height:
            self.examples = (
                pl.concat([self.examples, other.examples], how="vertical_relaxed")
                if self.examples.height
                else other.examples
            ).head(self.f.options.max_listed)

    def to_dict(self) -> dict[str, Any]:
        steps = self.steps.compact()
        return {
            "per_instrument": _records(steps),
            "regressions": int(steps["regressions"].sum()) if steps.height else 0,
            "gaps": int(steps["gaps"].sum()) if steps.height else 0,
            "regression_examples": _records(self.examples),
        }


def _percentiles(bucket: pl.Series, n: pl.Series) -> dict[str, Any]:
    """p50/p90/p99 from bucket counts: the upper edge of the bucket holding the percentile."""
    order = np.argsort(bucket.to_numpy())
    b, c = bucket.to_numpy()[order], n.to_numpy()[order].astype(np.int64)
    total = int(c.sum())
    out: dict[str, Any] = {"records": total, "negative": int(c[b == -2].sum()) if total else 0}
    cum = np.cumsum(c)
    for q in (50, 90, 99):
        if not total:
            out[f"p{q}_ns"] = None
            continue
        k = int(np.searchsorted(cum, math.ceil(total * q / 100)))
        out[f"p{q}_ns"] = _bucket_edge(int(b[min(k, len(b) - 1)]))
    return out


def _bucket_edge(bucket: int) -> float:
    if bucket == -2:
        return -1.0  # negative latency
    if bucket == -1:
        return 0.0
    return float(2 ** ((bucket + 1) / OCTAVE_STEPS))


def _records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts() if frame.height else []


def _day(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day))).isoformat()


def _json_row(row: dict[str, Any]) -> dict[str, str]:
    return {k: ("" if v is None else str(v)) for k, v in row.items()}


# -- the pipeline observer ------------------------------------------------------------------------


@dataclass
class FileFigures:
    report: FileReport
    figures: TableFigures | None  # None: failed or skipped (nothing kept)
    rules: list[tuple[str, str]] = field(default_factory=list)  # (name, severity) that applied


class ReportObserver:
    """Feeds each batch of a file to its figures; keeps a file's figures only if it ends well.

    The pipeline calls `file_started` at every attempt at a file (a retry starts afresh),
    `batch` per batch with the valid rows and the quarantined rows, and `file_finished` once;
    a failed (rolled back) file keeps its counts but none of its figures."""

    def __init__(self, rules: RuleBook | None = None, options: FigureOptions | None = None) -> None:
        self.rules = rules or RuleBook.load()
        self.options = options or FigureOptions()
        self.files: list[FileFigures] = []
        self._current: dict[int, TableFigures] = {}

    def file_started(self, report: FileReport) -> None:
        self._current.pop(id(report), None)

    def batch(
        self, report: FileReport, spec: TableSpec, valid: pl.DataFrame, invalid: pl.DataFrame
    ) -> None:
        figures = self._current.get(id(report))
        if figures is None:
            figures = self._current[id(report)] = TableFigures(spec, report.dataset, self.options)
        figures.add(valid, invalid)

    def file_finished(self, report: FileReport) -> None:
        figures = self._current.pop(id(report), None)
        keep = figures if report.status in ("loaded", "validated") else None
        rules: list[tuple[str, str]] = []
        if figures is not None:
            applied = self.rules.for_file(figures.spec, report.dataset, None, None).rules
            rules = [(r.name, r.severity) for r in applied]
        self.files.append(FileFigures(report, keep, rules))
