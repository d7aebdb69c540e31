"""Per-instrument series figures in numpy, a few passes over each batch's columns.

An instrument is a (publisher_id, instrument_id) pair. `Registry` gives each key a dense, stable
index (vectorized lookup; new keys are rare). `Series` keeps, per instrument, the last timestamp,
price and sequence number seen and the few figures asked for: the longest in-session silence,
bars missing inside sessions, price jumps and sequence regressions and gaps. Rows are taken in
file order per instrument; batches end anywhere without changing a figure.

A batch of at most `MAX_GROUPS` instruments (the usual case) is split with one comparison per
instrument and row (`instrument_groups`) and taken one instrument at a time (`Series.add_one`),
its state scalars, and work the rows cannot change skipped after one reduction (no gap longer
than the longest silence so far, no change over the jump bound, no sequence step below 0 or
above 1); a batch of more is sorted by instrument once and taken as segments (`add_grouped`),
its state gathered per row. Both give the same figures (tests/quality/test_series.py checks
them against a reference).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
import polars as pl

from histetl.read.calendars import buckets, covered

if TYPE_CHECKING:
    from histetl.quality.figures import TableFigures

I64 = npt.NDArray[np.int64]
NONE = np.iinfo(np.int64).min  # "no previous value"
_NO_ROWS = np.empty(0, dtype=np.int64)


class Registry:
    """Dense indexes for uint64 keys, in order of first appearance."""

    def __init__(self) -> None:
        self.keys: list[int] = []
        self._sorted = np.empty(0, dtype=np.uint64)
        self._index = np.empty(0, dtype=np.int64)
        self._of: dict[int, int] = {}  # key -> index, for lookups of a few keys

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, keys: npt.NDArray[np.uint64]) -> tuple[I64, I64]:
        """Index per row, and the rows where a key was seen for the first time."""
        if len(keys) <= 8:  # a few keys (the usual batch): a dict lookup each
            known = [self._of.get(k, -1) for k in keys.tolist()]
            if -1 not in known:
                return np.array(known, dtype=np.int64), _NO_ROWS
        n = len(self._sorted)
        if n:
            pos = np.minimum(np.searchsorted(self._sorted, keys), n - 1)
            found = self._sorted[pos] == keys
            if found.all():
                return self._index[pos], np.empty(0, dtype=np.int64)
            missing = np.flatnonzero(~found)
        else:
            missing = np.arange(len(keys), dtype=np.int64)
        new, first = np.unique(keys[missing], return_index=True)
        order = np.argsort(first)  # appearance order
        for k in new[order].tolist():
            self._of[k] = len(self.keys)
            self.keys.append(k)
        everything = np.array(self.keys, dtype=np.uint64)
        ranks = np.argsort(everything, kind="stable")
        self._sorted, self._index = everything[ranks], ranks.astype(np.int64)
        pos = np.searchsorted(self._sorted, keys)
        return self._index[pos], missing[first[order]]


def _grow(array: I64, size: int, fill: int) -> I64:
    if len(array) >= size:
        return array
    out = np.full(size, fill, dtype=np.int64)
    out[: len(array)] = array
    return out


class Traded(NamedTuple):
    """The per-row columns the series figures read: prices (int64 units of 1e-9) and the rows
    whose price counts (None: all), sequence numbers; None when the schema has none."""

    prices: I64 | None
    keep: npt.NDArray[np.bool_] | None
    seq: I64 | None

    def take(self, rows: I64 | None) -> Traded:
        if rows is None:
            return self
        return Traded(
            None if self.prices is None else self.prices[rows],  # strided: faster than take
            None if self.keep is None else np.take(self.keep, rows),
            None if self.seq is None else np.take(self.seq, rows),
        )


MAX_GROUPS = 8  # instruments a batch may hold to be taken one instrument at a time


def instrument_groups(
    pub: npt.NDArray[Any], iid: npt.NDArray[Any]
) -> list[tuple[int, I64 | None]] | None:
    """A batch's rows per instrument key (publisher << 32 | instrument), in order of first
    appearance (None: every row), when it holds at most `MAX_GROUPS` instruments; else None.
    One comparison per instrument and row: no per-row key, no sort."""
    if pub.min() == pub.max():
        column, high = iid, int(pub[0]) << 32
    else:
        column, high = (pub.astype(np.uint64) << np.uint64(32)) | iid.astype(np.uint64), 0
    same = column == column[0]
    if same.all():
        return [(high | int(column[0]), None)]
    groups: list[tuple[int, I64 | None]] = []
    left: npt.NDArray[np.bool_] | None = None  # rows of no group yet
    at, seen = 0, 0
    while len(groups) < MAX_GROUPS:
        if at:
            same = column == column[at]
        rows = np.flatnonzero(same)
        groups.append((high | int(column[at]), rows))
        seen += len(rows)
        if seen == len(column):
            return groups
        if left is None:
            left = ~same
        else:
            left[rows] = False
        at = int(np.argmax(left))
    return None


class Series:
    """Holes, jumps and sequence per instrument."""

    def __init__(self, figures: TableFigures) -> None:
        self.f = figures
        self.last_t = np.empty(0, dtype=np.int64)
        self.last_p = np.empty(0, dtype=np.int64)
        self.last_seq = np.empty(0, dtype=np.int64)
        self.best = np.empty(0, dtype=np.int64)  # longest in-session silence
        self.best_from = np.empty(0, dtype=np.int64)
        self.best_to = np.empty(0, dtype=np.int64)
        self.missing_bars = np.empty(0, dtype=np.int64)
        self.bar_holes = np.empty(0, dtype=np.int64)
        self.tick = np.empty(0, dtype=np.int64)  # smallest non-zero price change so far
        self.recent: dict[int, I64] = {}  # inst -> the last mad_window price changes
        self.jumps: list[dict[str, Any]] = []
        self.jump_count = 0
        self.seq = np.zeros((0, 4), dtype=np.int64)  # steps, regressions, gaps, largest gap
        self.regressions: list[dict[str, Any]] = []

    @property
    def rows(self) -> int:
        return (
            10 * len(self.last_t)
            + len(self.jumps)
            + len(self.regressions)
            + sum(len(r) for r in self.recent.values())
        )

    def _size(self, n: int) -> None:
        if len(self.last_t) >= n:
            return
        self.last_t = _grow(self.last_t, n, NONE)
        self.last_p = _grow(self.last_p, n, NONE)
        self.last_seq = _grow(self.last_seq, n, NONE)
        self.best = _grow(self.best, n, 0)
        self.best_from = _grow(self.best_from, n, 0)
        self.best_to = _grow(self.best_to, n, 0)
        self.missing_bars = _grow(self.missing_bars, n, 0)
        self.bar_holes = _grow(self.bar_holes, n, 0)
        self.tick = _grow(self.tick, n, np.iinfo(np.int64).max)
        grown = np.zeros((n, 4), dtype=np.int64)
        grown[: len(self.seq)] = self.seq
        self.seq = grown

    # -- one batch (valid rows) -----------------------------------------------------------------
    def add(self, t: I64, inst: I64, n_inst: int, cols: Traded) -> None:
        """Rows of any instruments: grouped by instrument (file order kept within each)."""
        small = inst.astype(np.int16) if n_inst < 2**15 else inst  # radix sort
        order = np.argsort(small, kind="stable")
        sorted_inst = inst[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_inst)) + 1]).astype(np.int64)
        self.add_grouped(t[order], sorted_inst, starts, cols.take(order), n_inst)

    def add_grouped(self, ts: I64, inst: I64, starts: I64, cols: Traded, n_inst: int) -> None:
        """Rows grouped by instrument (`starts`: where each instrument's rows begin)."""
        self._size(n_inst)
        self._holes(ts, inst, starts)
        if cols.prices is not None:
            keep = cols.keep
            if keep is None:
                self._jumps(ts, cols.prices, inst, starts)
            elif keep.any():
                sub_inst = inst[keep]
                sub_starts = np.concatenate([[0], np.flatnonzero(np.diff(sub_inst)) + 1])
                self._jumps(ts[keep], cols.prices[keep], sub_inst, sub_starts.astype(np.int64))
        if cols.seq is not None:
            self._sequence(ts, cols.seq, inst, starts)

    def _steps(self, values: I64, inst: I64, starts: I64, last: I64) -> tuple[I64, I64]:
        """Each row's step from the previous value of its instrument (row - step: the previous
        value); an instrument's first row ever gets a step of 0 and is returned as well."""
        step = np.empty_like(values)
        np.subtract(values[1:], values[:-1], out=step[1:])
        first = values[starts]
        before = last[inst[starts]]
        fresh = before == NONE
        step[starts] = first - np.where(fresh, first, before)
        ends = np.append(starts[1:], len(values)) - 1
        last[inst[ends]] = values[ends]
        return step, starts[fresh]

    def _holes(self, ts: I64, inst: I64, starts: I64) -> None:
        gap, _ = self._steps(ts, inst, starts, self.last_t)
        candidates = np.flatnonzero(gap > self.best[inst])
        f = self.f
        if f.bar_ns is not None:
            late = gap > f.bar_ns
            self._bars(ts[late] - gap[late], ts[late], inst[late], f.bar_ns)
        if not len(candidates):
            return
        hi, who = ts[candidates], inst[candidates]
        lo = hi - gap[candidates]
        silence = covered(f.sessions(int(lo.min()), int(hi.max())), lo, hi)
        for k in np.unique(who):
            i = int(np.argmax(np.where(who == k, silence, -1)))
            if silence[i] > self.best[k]:
                self.best[k], self.best_from[k], self.best_to[k] = silence[i], lo[i], hi[i]

    def _bars(self, lo: I64, hi: I64, inst: I64, interval: int) -> None:
        if not len(lo):
            return
        grid = buckets(self.f.sessions(int(lo.min()), int(hi.max())), interval)
        missing = covered(grid, lo // interval + 1, hi // interval)
        n = len(self.missing_bars)
        self.missing_bars += np.bincount(inst, weights=missing, minlength=n).astype(np.int64)
        self.bar_holes += np.bincount(inst[missing > 0], minlength=n).astype(np.int64)

    def _jumps(self, ts: I64, prices: I64, inst: I64, starts: I64) -> None:
        o = self.f.options
        step, fresh = self._steps(prices, inst, starts, self.last_p)
        change = np.abs(step)
        have = np.ones(len(prices), dtype=np.bool_)
        have[fresh] = False
        # the smallest non-zero change per segment: change - 1 as unsigned puts 0 last
        change -= 1
        least = np.minimum.reduceat(change.view(np.uint64), starts)
        change += 1
        none = least == np.uint64(np.iinfo(np.uint64).max)
        seg_min = np.where(none, np.iinfo(np.int64).max, (least + np.uint64(1)).view(np.int64))
        who = inst[starts]
        self.tick[who] = np.minimum(self.tick[who], seg_min)
        candidates = np.flatnonzero(change > min(o.jump_k, o.jump_ticks) * self.tick[inst])
        for i in candidates:
            seg = int(starts[np.searchsorted(starts, i, side="right") - 1])
            lo = max(seg, i - o.mad_window)
            self._jump(
                int(inst[i]), int(ts[i]), int(prices[i]), int(step[i]), change[lo:i][have[lo:i]]
            )
        if len(self.jumps) > 4 * o.max_listed:
            self._trim()
        ends = np.append(starts[1:], len(prices))
        for s, e in zip(starts, ends, strict=True):
            lo = max(s, e - o.mad_window)
            self._tail(int(inst[s]), change[lo:e][have[lo:e]])

    def _jump(self, k: int, t: int, p: int, step: int, window: I64) -> None:
        """List the change `step` to price `p` of instrument `k` at `t` if it is a jump
        (`window`: this batch's changes before it, at most `mad_window`)."""
        o = self.f.options
        if len(window) < o.mad_window and k in self.recent:
            window = np.concatenate([self.recent[k], window])[-o.mad_window :]
        mad = float(np.median(window)) if len(window) >= 10 else float("nan")
        d, tk = abs(step), int(self.tick[k])
        by_tick = d > o.jump_ticks * tk
        if not by_tick and not (mad > 0 and d > o.jump_k * mad):
            return
        self.jump_count += 1
        self.jumps.append(
            {
                "instrument": k,
                "t": t,
                "prev_p": (p - step) / 1e9,
                "p": p / 1e9,
                "d": d / 1e9,
                "ticks": d / tk,
                "mad": mad / 1e9 if mad == mad else None,
                "reason": f"> {o.jump_ticks} ticks"
                if by_tick
                else f"> {o.jump_k:g} x median change",
            }
        )

    def _tail(self, k: int, tail: I64) -> None:
        """Keep the last `mad_window` changes of instrument `k` (`tail`: this batch's)."""
        window = self.f.options.mad_window
        if len(tail) < window and k in self.recent:
            tail = np.concatenate([self.recent[k], tail])[-window:]
        self.recent[k] = tail

    def _trim(self) -> None:
        self.jumps = sorted(self.jumps, key=lambda j: -j["ticks"])[: self.f.options.max_listed]

    def _sequence(self, ts: I64, seq: I64, inst: I64, starts: I64) -> None:
        step, fresh = self._steps(seq, inst, starts, self.last_seq)
        n = len(self.seq)
        self.seq[:, 0] += np.bincount(inst, minlength=n) - np.bincount(inst[fresh], minlength=n)
        back = step < 0
        self.seq[:, 1] += np.bincount(inst[back], minlength=n)
        self.seq[:, 2] += np.bincount(inst[step > 1], minlength=n)
        largest = np.maximum.reduceat(step, starts) - 1
        who = inst[starts]
        self.seq[who, 3] = np.maximum(self.seq[who, 3], largest)
        room = self.f.options.max_listed - len(self.regressions)
        listed = np.flatnonzero(back)[:room] if room > 0 and back.any() else _NO_ROWS
        self._regressions(inst[listed], ts[listed], seq[listed], step[listed])

    def _regressions(self, inst: I64, ts: I64, seq: I64, step: I64) -> None:
        for k, t, s, d in zip(inst.tolist(), ts.tolist(), seq.tolist(), step.tolist(), strict=True):
            self.regressions.append({"instrument": k, "t": t, "prev": s - d, "sequence": s})

    # -- one instrument's rows (a batch of a few instruments): its state scalars ----------------
    def add_one(self, k: int, ts: I64, cols: Traded, n_inst: int) -> None:
        """The rows of instrument `k` in file order: the figures of `add_grouped` with one
        segment, with fewer passes over the rows."""
        self._size(n_inst)
        self._holes_one(k, ts)
        if cols.prices is not None:
            keep = cols.keep
            if keep is None:
                self._jumps_one(k, ts, cols.prices)
            elif keep.any():
                self._jumps_one(k, ts[keep], cols.prices[keep])
        if cols.seq is not None:
            self._sequence_one(k, ts, cols.seq)

    def _step_one(self, k: int, values: I64, last: I64) -> tuple[I64, bool]:
        """`_steps` of one instrument's rows; True: its first row ever (step 0)."""
        step = np.empty_like(values)
        np.subtract(values[1:], values[:-1], out=step[1:])
        before = int(last[k])
        fresh = before == NONE
        step[0] = 0 if fresh else int(values[0]) - before
        last[k] = values[-1]
        return step, fresh

    def _holes_one(self, k: int, ts: I64) -> None:
        gap, _ = self._step_one(k, ts, self.last_t)
        f = self.f
        if f.bar_ns is not None:
            late = gap > f.bar_ns
            if late.any():
                self._bars(ts[late] - gap[late], ts[late], np.full(int(late.sum()), k), f.bar_ns)
        floor = int(self.best[k])
        if int(gap.max()) <= floor:  # no gap can hold a longer silence
            return
        candidates = np.flatnonzero(gap > floor)
        if len(candidates) > 1:
            # a silence is at most its gap: only gaps at least as long as the silence of the
            # longest one can hold the longest silence
            top = int(candidates[np.argmax(gap[candidates])])
            hi, lo = ts[top : top + 1], ts[top : top + 1] - gap[top : top + 1]
            least = covered(f.sessions(int(lo[0]), int(hi[0])), lo, hi)[0]
            candidates = candidates[gap[candidates] >= least]
        hi = ts[candidates]
        lo = hi - gap[candidates]
        silence = covered(f.sessions(int(lo.min()), int(hi.max())), lo, hi)
        i = int(np.argmax(silence))
        if silence[i] > floor:
            self.best[k], self.best_from[k], self.best_to[k] = silence[i], lo[i], hi[i]

    def _jumps_one(self, k: int, ts: I64, prices: I64) -> None:
        o = self.f.options
        step, fresh = self._step_one(k, prices, self.last_p)
        below = np.abs(step)  # |change| - 1 as unsigned: the smallest is the smallest non-zero
        below -= 1
        least = int(below.view(np.uint64).min())
        if least != 2**64 - 1:
            self.tick[k] = min(int(self.tick[k]), least + 1)
        bound = min(o.jump_k, o.jump_ticks) * float(self.tick[k])
        first = 1 if fresh else 0  # a first row ever has no change
        if bound < 2**62 and int(below.max()) >= int(bound):  # change > bound, an integer
            for i in np.flatnonzero(below >= int(bound)).tolist():
                lo = max(first, i - o.mad_window)
                self._jump(k, int(ts[i]), int(prices[i]), int(step[i]), below[lo:i] + 1)
            if len(self.jumps) > 4 * o.max_listed:
                self._trim()
        self._tail(k, below[max(first, len(below) - o.mad_window) :] + 1)

    def _sequence_one(self, k: int, ts: I64, seq: I64) -> None:
        step, fresh = self._step_one(k, seq, self.last_seq)
        low, high = int(step.min()), int(step.max())
        row = self.seq[k]
        row[0] += len(seq) - fresh
        if high > 1:
            row[2] += int(np.count_nonzero(step > 1))
        row[3] = max(int(row[3]), high - 1)
        if low < 0:
            back = step < 0
            row[1] += int(np.count_nonzero(back))
            room = self.f.options.max_listed - len(self.regressions)
            if room > 0:
                listed = np.flatnonzero(back)[:room]
                self._regressions(np.full(len(listed), k), ts[listed], seq[listed], step[listed])


def combine_series(parts: list[dict[str, Any]], max_listed: int) -> dict[str, Any]:
    """Per-instrument figures of several files as one table's."""
    longest: dict[tuple[int, int], dict[str, Any]] = {}
    missing: dict[tuple[int, int], dict[str, Any]] = {}
    sequence: dict[tuple[int, int], dict[str, Any]] = {}
    jumps: list[dict[str, Any]] = []
    regressions: list[dict[str, Any]] = []
    count = 0
    for part in parts:
        for row in part["longest"]:
            key = (row["publisher_id"], row["instrument_id"])
            if key not in longest or row["silence_ns"] > longest[key]["silence_ns"]:
                longest[key] = row
        for row in part["missing_bars"]:
            key = (row["publisher_id"], row["instrument_id"])
            have = missing.setdefault(key, {**row, "missing": 0, "holes": 0})
            have["missing"] += row["missing"]
            have["holes"] += row["holes"]
        for row in part["sequence"]:
            key = (row["publisher_id"], row["instrument_id"])
            have = sequence.setdefault(key, {**row, "steps": 0, "regressions": 0, "gaps": 0})
            for name in ("steps", "regressions", "gaps"):
                have[name] += row[name]
            have["largest_gap"] = max(have["largest_gap"], row["largest_gap"])
        jumps.extend(part["jumps"])
        count += part["jump_count"]
        regressions.extend(part["regressions"])
    listed = sorted(jumps, key=lambda j: -j["ticks"])[:max_listed]
    steps = sorted(sequence.values(), key=lambda r: (r["publisher_id"], r["instrument_id"]))
    return {
        "longest": sorted(longest.values(), key=lambda r: -r["silence_ns"]),
        "missing_bars": sorted(missing.values(), key=lambda r: -r["missing"]),
        "prices": {"count": count, "listed": sorted(listed, key=lambda j: j["t"])},
        "sequence": {
            "per_instrument": steps,
            "regressions": sum(r["regressions"] for r in steps),
            "gaps": sum(r["gaps"] for r in steps),
            "regression_examples": regressions[:max_listed],
        },
    }


def _decimal(series: pl.Series) -> tuple[I64, npt.NDArray[np.bool_]]:
    """A decimal128 price column as int64 units of 1e-9 (DBN's own fixed point), and validity.
    The values came from int64 DBN fields, so the low 64 bits hold them exactly."""
    if series.dtype != pl.Decimal(19, 9):
        series = series.cast(pl.Decimal(19, 9))
    array = series.to_arrow()
    if hasattr(array, "combine_chunks"):
        array = array.combine_chunks()
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)
    low = words[2 * array.offset : 2 * (array.offset + len(array)) : 2]
    if array.null_count == 0:
        return low, np.ones(len(low), dtype=np.bool_)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return low, valid
