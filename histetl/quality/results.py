"""A table's figures as the plain dict the page shows and the JSON sidecar holds.

Run once per table when the page is written, on the folded aggregates (a few thousand rows at
most): the latency percentiles of every hour come from one sort of the histogram, in numpy.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from histetl.quality.aggregates import QUANTILES, SUB_BITS, percentiles
from histetl.quality.series import combine_series

if TYPE_CHECKING:
    from histetl.quality.figures import TableFigures

NO_SYMBOL = "(no symbol)"


def figures_dict(f: TableFigures) -> dict[str, Any]:
    """Every figure of `f` (files merged into it included)."""
    series = combine_series([series_dict(f), *f.merged], f.options.max_listed)
    volume = f.volume.compact()
    o = f.options
    return {
        "volume": records(volume),
        "untimed_records": f.untimed,
        "latency": _latency(f),
        "books": records(f.books.compact()) if f.has_book else None,
        "holes": {
            "calendar": f.calendar.name if f.calendar else None,
            "longest": series["longest"],
            "bar_interval_ns": f.bar_ns,
            "missing_bars": series["missing_bars"] if f.bar_ns else None,
        },
        "prices": {
            "rule": f"|change| > {o.jump_k:g} x median |change| of the previous "
            f"{o.mad_window}, or > {o.jump_ticks} ticks",
            **series["prices"],
        }
        if f.price_col
        else None,
        "sequence": series["sequence"] if f.has_sequence else None,
        "symbology": _symbology(volume, o.max_listed),
        "samples": f.samples,
    }


def series_dict(f: TableFigures) -> dict[str, Any]:
    """One file's per-instrument figures, keyed by publisher, instrument and symbol."""
    s = f.series
    keys = np.array(f.instruments.keys, dtype=np.uint64)
    pubs = (keys >> np.uint64(32)).astype(np.int64).tolist()
    iids = (keys & np.uint64(0xFFFFFFFF)).astype(np.int64).tolist()
    known = range(min(len(keys), len(s.best)))

    def ident(k: int) -> dict[str, Any]:
        return {
            "publisher_id": pubs[k],
            "instrument_id": iids[k],
            "symbol": f.inst_symbol[k] or NO_SYMBOL,
        }

    def strip(row: dict[str, Any]) -> dict[str, Any]:
        return {**ident(row["instrument"]), **{k: v for k, v in row.items() if k != "instrument"}}

    return {
        "longest": [
            {**ident(k), "silence_ns": int(s.best[k]), "from_ns": int(s.best_from[k]),
             "to_ns": int(s.best_to[k])}
            for k in known if s.best[k] > 0
        ],
        "missing_bars": [
            {**ident(k), "missing": int(s.missing_bars[k]), "holes": int(s.bar_holes[k])}
            for k in known if s.missing_bars[k] > 0
        ],
        "jumps": [strip(j) for j in s.jumps],
        "jump_count": s.jump_count,
        "sequence": [
            {**ident(k), "steps": int(s.seq[k, 0]), "regressions": int(s.seq[k, 1]),
             "gaps": int(s.seq[k, 2]), "largest_gap": int(s.seq[k, 3])}
            for k in known if s.seq[k, 0] > 0
        ],
        "regressions": [strip(r) for r in s.regressions],
    }  # fmt: skip


def _latency(f: TableFigures) -> dict[str, Any] | None:
    if not f.has_latency:
        return None
    hist = f.latency.compact()  # sorted by hour, then bucket
    hours: list[dict[str, Any]] = []
    if hist.height:
        hour, bucket = hist["hour"].to_numpy(), hist["bucket"].to_numpy().astype(np.int64)
        n = hist["n"].to_numpy().astype(np.int64)
        starts = np.flatnonzero(np.concatenate([[True], hour[1:] != hour[:-1]]))
        per_hour = percentiles(bucket, n, starts)
        hours = [{"hour": h, **p} for h, p in zip(hour[starts].tolist(), per_hour, strict=True)]
        values, where = np.unique(bucket, return_inverse=True)
        overall = np.zeros(len(values), dtype=np.int64)
        np.add.at(overall, where.reshape(-1), n)
        total = percentiles(values, overall, np.zeros(1, dtype=np.int64))[0]
        histogram = [
            {"hour": h, "bucket": b, "n": c}
            for h, b, c in zip(hour.tolist(), bucket.tolist(), n.tolist(), strict=True)
        ]
    else:
        total = {"records": 0, "negative": 0, **{f"p{q}_ns": None for q in QUANTILES}}
        histogram = []
    return {
        "bucket_width": f"1/{1 << SUB_BITS} of an octave (log-linear)",
        "per_hour": hours,
        "overall": total,
        "max_ns": f.lat_max,
        "min_ns": f.lat_min,
        "histogram": histogram,
    }


def _symbology(volume: pl.DataFrame, max_listed: int) -> dict[str, Any]:
    per_day: list[dict[str, Any]] = []
    unmapped = pl.DataFrame(schema={"instrument_id": pl.Int64, "records": pl.Int64})
    if volume.height:
        days = (
            volume.group_by(pl.col("hour") // 24)
            .agg(pl.col("symbol").drop_nulls().unique().sort())
            .sort("hour")
        )
        for day, symbols in days.iter_rows():
            per_day.append({"day": _day(day), "symbols": symbols})
        unmapped = (
            volume.filter(pl.col("symbol").is_null())
            .group_by("instrument_id")
            .agg(pl.col("records").sum())
            .sort("records", "instrument_id", descending=[True, False])
        )
    prev: set[str] | None = None
    for entry in per_day:
        now = set(entry["symbols"])
        entry["new"] = sorted(now - prev) if prev is not None else None
        entry["missing"] = sorted(prev - now) if prev is not None else None
        prev = now
    return {
        "per_day": per_day,
        "unmapped_rows": int(unmapped["records"].sum()) if unmapped.height else 0,
        "unmapped_ids": records(unmapped.head(max_listed)),
        "unmapped_id_count": unmapped.height,
    }


def records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dicts() if frame.height else []


def _day(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=int(day))).isoformat()
