"""Timings of named paths: each measured once at a quarter of the size (for the peak-RSS
comparison), then at the full size up to `repeat` times (the median is kept).

Paths compared with each other are measured as a group, interleaved round by round, so a burst
of other work on the machine hits both sides alike. A path gets another round only while its
runs so far plus one more stay within `budget` seconds: quick paths are repeated, slow ones
(already averaging over tens of seconds) run once.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from benchmarks.measure import Proc


@dataclass
class Sample:
    """One run of a path: the operation's seconds, rows, and its process (if it had its own)."""

    seconds: float
    rows: int
    proc: Proc | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Timing:
    key: str  # "<section>.<path>"
    label: str
    rows: int
    seconds: float  # the operation, median of the repeats
    process_seconds: float | None = None  # wall time of its whole process, median
    peak_rss_mb: float | None = None
    small_rows: int | None = None
    small_peak_rss_mb: float | None = None
    runs: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def section(self) -> str:
        return self.key.split(".", 1)[0]

    @property
    def rows_per_s(self) -> float | None:
        return self.rows / self.seconds if self.seconds > 0 and self.rows else None

    @property
    def rss_growth(self) -> float | None:
        if self.peak_rss_mb and self.small_peak_rss_mb:
            return self.peak_rss_mb / self.small_peak_rss_mb
        return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "rows": self.rows,
            "seconds": round(self.seconds, 4),
            "rows_per_s": round(self.rows_per_s) if self.rows_per_s else None,
            "process_seconds": _round(self.process_seconds, 4),
            "peak_rss_mb": _round(self.peak_rss_mb, 1),
            "runs": [round(r, 4) for r in self.runs],
        }
        if self.small_rows is not None:
            small_rss = _round(self.small_peak_rss_mb, 1)
            out["small"] = {"rows": self.small_rows, "peak_rss_mb": small_rss}
            out["rss_growth"] = _round(self.rss_growth, 3)
        return out | self.extra


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class Entry(NamedTuple):
    key: str  # "<section>.<path>"
    label: str
    run: Callable[[int], Sample]  # rows -> one run


class Bench:
    def __init__(self, repeat: int = 3, budget: float = 30.0) -> None:
        self.repeat = max(repeat, 1)
        self.budget = budget
        self.timings: dict[str, Timing] = {}
        self.notes: list[str] = []

    def measure(
        self,
        key: str,
        label: str,
        run: Callable[[int], Sample],
        rows: int,
        small_rows: int | None = None,
    ) -> Timing:
        return self.group([Entry(key, label, run)], rows, small_rows)[0]

    def group(
        self,
        paths: list[Entry],
        rows: int,
        small_rows: int | None = None,
        budget_factor: float = 1.0,
    ) -> list[Timing]:
        """Measure `paths` interleaved; `budget_factor` widens the budget for a headline pair."""
        budget = self.budget * budget_factor
        small = {}
        if small_rows is not None and small_rows < rows:
            small = {p.key: p.run(small_rows) for p in paths}
        samples: dict[str, list[Sample]] = {p.key: [] for p in paths}
        spent = dict.fromkeys(samples, 0.0)
        last = dict.fromkeys(samples, 0.0)
        for round_ in range(self.repeat):
            for path in paths:
                if round_ and spent[path.key] + last[path.key] > budget:
                    continue
                started = time.perf_counter()
                samples[path.key].append(path.run(rows))
                last[path.key] = time.perf_counter() - started
                spent[path.key] += last[path.key]
        return [self._record(p, samples[p.key], small.get(p.key)) for p in paths]

    def _record(self, path: Entry, samples: list[Sample], small: Sample | None) -> Timing:
        procs = [s.proc for s in samples if s.proc is not None]
        timing = Timing(
            path.key,
            path.label,
            rows=samples[-1].rows,
            seconds=statistics.median(s.seconds for s in samples),
            process_seconds=statistics.median(p.wall for p in procs) if procs else None,
            peak_rss_mb=max(p.peak_rss_mb for p in procs) if procs else None,
            runs=[s.seconds for s in samples],
            extra=samples[-1].extra,
        )
        if small is not None:
            timing.small_rows = small.rows
            timing.small_peak_rss_mb = small.proc.peak_rss_mb if small.proc else None
        self.timings[path.key] = timing
        rate = f"{timing.rows_per_s:,.0f} rows/s" if timing.rows_per_s else ""
        rss = f", peak RSS {timing.peak_rss_mb:,.0f} MB" if timing.peak_rss_mb else ""
        print(
            f"  {path.key:<30} {timing.seconds:8.2f} s (x{len(samples)})  {rate}{rss}",
            file=sys.stderr,
            flush=True,
        )
        return timing

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  note: {text}", file=sys.stderr, flush=True)
