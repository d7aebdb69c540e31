"""Derived bars: OHLCV at any multiple of a loaded bar interval (5m, 15m, 60m, 4h from 1m bars),
computed with Polars `group_by_dynamic` and stored like the source bars.

A derived table (`ohlcv_5m`) has exactly the columns and types of `ohlcv_1m` and the same
primary key, and is stored by the target's `replace_window` with a ledger row, so `query`,
`verify` and `status` treat it like any loaded table, in DuckDB, PostgreSQL or a Delta lake.

Bars: per instrument_id, publisher_id and symbol, buckets of the interval aligned to the epoch,
closed on the left and labelled by their start; open = first open, high = max, low = min,
close = last close, volume = sum; a bar only where source bars exist. `rtype` is the DBN rtype of
the interval when DBN has one (60m -> 34, the 1-hour rtype), otherwise the source's. The
`record_hash` of a derived bar mixes instrument_id, publisher_id and the interval, so its key
depends only on the bucket.

Work is done in windows of whole buckets (about a UTC day), aligned to the epoch so that every
run cuts the same windows. A window is replaced in one transaction (a lake: one Delta commit):
its bars are recomputed from the source, the stored ones deleted and the new ones inserted, and
its ledger row (one per target and window, `loaded` = the bars now in the window) is written.
Rerunning over a range whose source changed (a late file) therefore corrects the bars instead
of leaving stale ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from histetl.errors import ConfigError
from histetl.mapping import to_arrow
from histetl.read.database import Database
from histetl.schemas import table_spec
from histetl.sqltext import literal, quote
from histetl.targets import (
    LEDGER_TABLE,
    LedgerEntry,
    Sink,
    TableTarget,
    open_sink,
)
from histetl.times import format_ns, parse_time

NS = 10**9
_UNITS = {"s": NS, "m": 60 * NS, "h": 3600 * NS, "d": 86_400 * NS}
_DAY = _UNITS["d"]
SOURCES: dict[str, int] = {
    "ohlcv-1s": _UNITS["s"],
    "ohlcv-1m": _UNITS["m"],
    "ohlcv-1h": _UNITS["h"],
    "ohlcv-1d": _UNITS["d"],
}
# DBN rtypes of the bar intervals DBN knows (databento_dbn.RType.OHLCV_1S ... OHLCV_1D)
_DBN_RTYPES = {_UNITS["s"]: 32, _UNITS["m"]: 33, _UNITS["h"]: 34, _UNITS["d"]: 35}
_CANONICAL_TABLES = {s.replace("-", "_") for s in (*SOURCES, "ohlcv-eod")}
_INTERVAL = re.compile(r"^(\d+)([smhd])$")
_KEYS = ["instrument_id", "publisher_id", "symbol"]


def parse_interval(text: str) -> int:
    """Nanoseconds of `5m`, `15m`, `60m`, `4h`, `30s`, `1d`."""
    match = _INTERVAL.match(text.strip())
    if match is None or int(match[1]) == 0:
        raise ConfigError(
            f"cannot read {text!r} as a bar interval",
            where="--interval",
            hint="a positive number and a unit: 5m, 15m, 60m, 4h, 30s, 1d",
        )
    return int(match[1]) * _UNITS[match[2]]


@dataclass(frozen=True)
class ResampleOptions:
    db: str
    interval: str  # "5m", "15m", "60m", ...
    source: str = "ohlcv-1m"
    start: str | None = None  # limits the work to the windows overlapping [start, end)
    end: str | None = None
    table: str | None = None  # target table; default ohlcv_<interval>


@dataclass
class ResampleReport:
    source: str
    target: str
    interval: str
    windows: int = 0
    source_rows: int = 0
    bars: int = 0
    replaced: int = 0  # derived bars deleted and recomputed
    first_ns: int | None = None
    last_ns: int | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if not self.windows:
            return f"no {self.source} bars in the range: nothing to resample"
        span = f"{format_ns(self.first_ns or 0)} .. {format_ns(self.last_ns or 0)}"
        return (
            f"{self.source} -> {self.target} ({self.interval}): {self.source_rows} source bars, "
            f"{self.bars} bars written ({self.replaced} replaced) in {self.windows} window(s), "
            f"{span}"
        )


def target_name(options: ResampleOptions) -> str:
    if options.table:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", options.table):
            raise ConfigError(
                f"bad table name {options.table!r}",
                where="--table",
                hint="lower-case letters, digits and underscores",
            )
        name = options.table
    else:
        name = "ohlcv_" + options.interval.strip()
    if name in _CANONICAL_TABLES or name.startswith("histetl_"):
        raise ConfigError(
            f"{name} is a DBN table that histetl loads; derived bars need a table of their own",
            where="--interval/--table",
            hint="spell the interval differently (60m instead of 1h) or pass --table",
        )
    return name


def check_options(options: ResampleOptions) -> tuple[int, int, str]:
    """(interval ns, source interval ns, target table), or ConfigError: nothing is touched."""
    interval_ns = parse_interval(options.interval)
    if options.source not in SOURCES:
        raise ConfigError(
            f"cannot resample {options.source!r}",
            where="--from",
            hint=f"source bars: {', '.join(SOURCES)}",
        )
    source_ns = SOURCES[options.source]
    if interval_ns <= source_ns or interval_ns % source_ns:
        raise ConfigError(
            f"{options.interval} is not a multiple (> 1) of the {options.source} interval",
            where="--interval",
            hint="derived bars combine whole source bars: e.g. 5m, 15m or 60m from ohlcv-1m",
        )
    return interval_ns, source_ns, target_name(options)


def resample_frame(frame: pl.DataFrame, interval_ns: int) -> pl.DataFrame:
    """OHLCV bars of `interval_ns` from canonical bars (any order), in the canonical bar
    layout, sorted by ts_event, instrument_id."""
    spec = table_spec("ohlcv-1m")
    if frame.is_empty():
        empty = pl.from_arrow(spec.arrow_schema.empty_table())
        assert isinstance(empty, pl.DataFrame)
        return empty
    bars = (
        frame.sort([*_KEYS, "ts_event"])
        .group_by_dynamic(
            "ts_event",
            every=f"{interval_ns}ns",
            closed="left",
            label="left",
            start_by="window",
            group_by=_KEYS,
        )
        .agg(
            pl.col("rtype").first(),
            pl.col("open").first(),
            pl.col("high").max(),
            pl.col("low").min(),
            pl.col("close").last(),
            pl.col("volume").sum(),
        )
    )
    rtype = _DBN_RTYPES.get(interval_ns)
    if rtype is not None:
        bars = bars.with_columns(pl.lit(rtype, pl.UInt8).alias("rtype"))
    hashes = bar_hash(
        bars["instrument_id"].to_numpy(), bars["publisher_id"].to_numpy(), interval_ns
    )
    bars = bars.with_columns(pl.Series("record_hash", hashes, pl.Int64))
    return bars.select(spec.column_names).sort(["ts_event", "instrument_id", "publisher_id"])


def bar_hash(instrument_id: np.ndarray, publisher_id: np.ndarray, interval_ns: int) -> np.ndarray:
    """A stable 64-bit id (splitmix64) of (instrument_id, publisher_id, interval)."""
    with np.errstate(over="ignore"):
        x = instrument_id.astype(np.uint64) << np.uint64(16)
        x ^= publisher_id.astype(np.uint64)
        x ^= np.uint64(interval_ns) * np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x.view(np.int64)


def window_ns(interval_ns: int) -> int:
    """Whole buckets covering about one day: windows are multiples of this from the epoch."""
    return interval_ns * max(1, -(-_DAY // interval_ns))


def resample(
    options: ResampleOptions, on_window: Callable[[str], None] | None = None
) -> ResampleReport:
    """Compute and store derived bars over the source's whole range (or the windows that
    overlap [start, end)); the library form of `histetl resample`."""
    interval_ns, _source_ns, target = check_options(options)
    start = parse_time(options.start, "--start") if options.start else None
    end = parse_time(options.end, "--end") if options.end else None
    if start is not None and end is not None and start >= end:
        raise ConfigError("--start is not before --end", where="--start/--end")
    source = options.source.replace("-", "_")
    report = ResampleReport(options.source, target, options.interval)
    sink = open_sink(options.db)
    try:
        db = Database(sink.reader())
        if source not in db.tables() or not db.has_rows(source):
            raise ConfigError(
                f"nothing loaded for {options.source}",
                where="--from",
                hint=f"load {options.source} bars first (histetl replay / run)",
            )
        first, last = _source_span(db, source, start, end)
        if first is None or last is None:
            return report
        step = window_ns(interval_ns)
        dataset = _datasets(db, source)
        spec = table_spec("ohlcv-1m")
        tt = TableTarget(target, spec.arrow_schema, spec.key, "ts_event")
        for w_start in range(first // step * step, last + 1, step):
            window = (w_start, w_start + step)
            _window(sink, db, tt, source, interval_ns, window, dataset, report)
            if on_window is not None:
                on_window(f"{target} {format_ns(w_start)}: {report.bars} bars so far")
    finally:
        sink.close()
    return report


def _source_span(
    db: Database, source: str, start: int | None, end: int | None
) -> tuple[int | None, int | None]:
    where = db.time_range("ts_event", start, end)
    sql = (
        f"SELECT min({db.time_ns('ts_event')}), max({db.time_ns('ts_event')}) FROM {quote(source)}"
    )
    rows = db.rows(sql + (" WHERE " + " AND ".join(where) if where else ""))
    first, last = rows[0] if rows else (None, None)
    return (None if first is None else int(first)), (None if last is None else int(last))


def _datasets(db: Database, source: str) -> str:
    rows = db.rows(
        f"SELECT DISTINCT dataset FROM {LEDGER_TABLE} WHERE target_table = {literal(source)}"
    )
    return "+".join(sorted(str(r[0]) for r in rows)) or "unknown"


def _window(
    sink: Sink,
    db: Database,
    target: TableTarget,
    source: str,
    interval_ns: int,
    window: tuple[int, int],
    dataset: str,
    report: ResampleReport,
) -> None:
    """Recompute one window's derived bars and replace the stored ones in one transaction,
    with its ledger row (the target's `replace_window`)."""
    w_start, w_end = window
    sha = hashlib.sha256(f"histetl-resample|{target.name}|{w_start}|{w_end}".encode()).hexdigest()
    rows = db.read(source, where=db.time_range("ts_event", w_start, w_end), order_by=None)
    frame = pl.from_arrow(rows.read_all())
    assert isinstance(frame, pl.DataFrame)
    bars = resample_frame(frame, interval_ns)
    table = to_arrow(bars).cast(target.schema)
    entry = LedgerEntry(
        sha,
        target.name,
        f"resample:{source}@{format_ns(w_start)}",
        dataset,
        "ohlcv-" + report.interval.strip(),
        table.num_rows,
        table.num_rows,
        0,
        0,
        "resample",
        dt.datetime.now(dt.UTC),
    )
    replaced, stored = sink.replace_window(target, window, table, entry)
    if stored is None:
        return  # no bars before or after: nothing written
    report.windows += 1
    report.source_rows += frame.height
    report.bars += table.num_rows
    report.replaced += replaced
    if table.num_rows:
        first = int(bars["ts_event"].dt.epoch("ns").min())  # type: ignore[arg-type]
        last = int(bars["ts_event"].dt.epoch("ns").max())  # type: ignore[arg-type]
        report.first_ns = first if report.first_ns is None else min(report.first_ns, first)
        report.last_ns = last if report.last_ns is None else max(report.last_ns, last)
