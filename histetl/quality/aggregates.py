"""Small aggregates for the quality figures: partial group-by sums folded in numpy, and the
log-linear latency histogram's buckets and percentiles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from histetl.quality.series import I64

COMPACT_AT = 128  # partial aggregates kept before they are folded together
COMPACT_ROWS = 1 << 16  # ... or rows in them (many instruments: big parts)
SUB_BITS = 3  # latency: 2**3 linear buckets per octave
LAT_BUCKETS = 2 + (64 << SUB_BITS)  # negative, zero, then [1 ns, 2**63 ns)
QUANTILES = (50, 90, 99)  # latency percentiles shown


class Sums:
    """Partial group-by sums (columns of numpy arrays; a string key as a list), folded
    together in numpy every `COMPACT_AT` parts or `COMPACT_ROWS` rows in parts, so the state
    stays one row per key."""

    def __init__(self, keys: Sequence[str], how: dict[str, str]) -> None:
        assert set(how.values()) == {"sum"}, how
        self.keys, self.values = list(keys), list(how)
        self.parts: list[dict[str, Any]] = []
        self._pending = 0  # rows in the parts added since the last fold

    def add(self, part: dict[str, Any]) -> None:
        rows = len(part[self.keys[0]])
        if rows == 0:
            return
        self.parts.append(part)
        self._pending += rows
        if len(self.parts) >= COMPACT_AT or self._pending >= COMPACT_ROWS:
            self._fold()

    def merge(self, other: Sums) -> None:
        for part in other.parts:
            self.add(part)

    def _fold(self) -> dict[str, Any] | None:
        self._pending = 0
        if not self.parts:
            return None
        if len(self.parts) == 1:
            return self.parts[0]
        cols = {
            c: (
                [x for p in self.parts for x in p[c]]
                if isinstance(self.parts[0][c], list)
                else np.concatenate([np.asarray(p[c], dtype=np.int64) for p in self.parts])
            )
            for c in self.keys + self.values
        }
        codes = []
        for c in self.keys:  # each key as small integer codes, sorted like the values
            if isinstance(cols[c], list):
                names = sorted({x for x in cols[c] if x is not None})
                index = {name: i for i, name in enumerate(names)}
                codes.append(np.array([index.get(x, len(names)) for x in cols[c]], np.int64))
            else:
                codes.append(np.unique(cols[c], return_inverse=True)[1].reshape(-1))
        order = np.lexsort(codes[::-1])
        keys = np.stack([k[order] for k in codes], axis=1)
        starts = np.flatnonzero(np.concatenate([[True], (keys[1:] != keys[:-1]).any(axis=1)]))
        out: dict[str, Any] = {}
        for c in self.keys:
            picked = order[starts]
            col = cols[c]
            out[c] = [col[i] for i in picked] if isinstance(col, list) else col[picked]
        for c in self.values:
            out[c] = np.add.reduceat(cols[c][order], starts)
        self.parts = [out]
        return out

    def compact(self) -> pl.DataFrame:
        """Everything folded, one row per key, sorted by the keys (nulls last)."""
        folded = self._fold()
        if folded is None:
            return pl.DataFrame()
        return frame_of(folded).sort(self.keys, nulls_last=True)

    @property
    def rows(self) -> int:
        return sum(len(p[self.keys[0]]) for p in self.parts)


def frame_of(columns: dict[str, Any]) -> pl.DataFrame:
    """Columns (numpy integers, or a list of strings) as a frame; built from Python lists: a
    few thousand rows, and Polars reading numpy arrays would import numpy.ma (~50 ms)."""
    return pl.DataFrame(
        {
            k: pl.Series(k, v, dtype=pl.String)
            if isinstance(v, list)
            else pl.Series(k, v.tolist(), dtype=pl.Int32 if v.dtype == np.int32 else pl.Int64)
            for k, v in columns.items()
        }
    )


def ascending(values: I64) -> bool:
    return len(values) < 2 or bool(np.all(values[1:] >= values[:-1]))


def ints(series: pl.Series) -> I64:
    """Timestamps (or integers) as int64, without a copy when there are no nulls."""
    values = series.to_numpy()
    if values.dtype.kind == "M":
        return values.view(np.int64)
    return values.astype(np.int64, copy=False)


def percentiles(bucket: I64, n: I64, starts: I64) -> list[dict[str, Any]]:
    """p50/p90/p99 of each histogram segment (`starts`: where each begins; buckets ascending
    within it): the upper edge of the bucket holding the percentile."""
    cum = np.cumsum(n)
    ends = np.append(starts[1:], len(n))
    totals = np.add.reduceat(n, starts)
    before = cum[starts] - n[starts]
    negative = np.add.reduceat(np.where(bucket == -2, n, 0), starts)
    at = {q: np.searchsorted(cum, before + -(-totals * q // 100)) for q in QUANTILES}
    out = []
    for i, total in enumerate(totals.tolist()):
        row: dict[str, Any] = {"records": total, "negative": int(negative[i])}
        last = int(ends[i]) - 1
        for q in QUANTILES:
            row[f"p{q}_ns"] = bucket_edge(int(bucket[min(int(at[q][i]), last)]))
        out.append(row)
    return out


def bucket_edge(bucket: int) -> float:
    """The upper edge of a latency bucket: octave e, linear step m -> 2**e * (1 + (m+1)/8)."""
    if bucket == -2:
        return -1.0  # negative latency
    if bucket == -1:
        return 0.0
    octave, step = bucket >> SUB_BITS, bucket & ((1 << SUB_BITS) - 1)
    return float(2**octave * (1 + (step + 1) / (1 << SUB_BITS)))
