"""The weekly session calendar that spreads records over trading hours."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from histetl.synth.spec import DAY_NS, F64, I64, MINUTE_NS

# -- session calendar -----------------------------------------------------------------------


def _minute_weights(start_ns: int, days: int, profile: str) -> F64:
    """Relative activity per UTC minute of the range (0 = market closed)."""
    minute = start_ns // MINUTE_NS + np.arange(days * 1440, dtype=np.int64)
    local = minute - (6 * 60 if profile == "future" else 5 * 60)  # CT or ET, no DST
    weekday = (local // 1440 + 3) % 7  # Monday = 0
    mod = local % 1440
    weekdays = weekday <= 4

    def between(lo: float, hi: float) -> npt.NDArray[np.bool_]:
        return (mod >= lo * 60) & (mod < hi * 60)

    if profile == "future":
        closed = (
            (weekday == 5)
            | ((weekday == 6) & (mod < 17 * 60))
            | ((weekday == 4) & (mod >= 16 * 60))
            | ((weekday <= 3) & between(16, 17))
        )
        regular = weekdays & between(8.5, 15.25)
        weights = np.where(closed, 0.0, np.where(regular, 6.0, 1.0))
    elif profile == "equity":
        edges = between(9.5, 9.5 + 5 / 60) | between(16 - 5 / 60, 16)
        weights = weekdays * (
            0.25 * between(4, 9.5) + 4.0 * between(9.5, 16) + 0.25 * between(16, 20) + 12.0 * edges
        )
    else:  # auction windows (imbalance)
        weights = weekdays * (3.0 * between(9 + 25 / 60, 9.5) + 6.0 * between(15 + 50 / 60, 16))
    weights = np.asarray(weights, dtype=np.float64)
    if not weights.any():
        weights = np.ones_like(weights)
    return weights


class _Calendar:
    def __init__(self, start_ns: int, days: int, profile: str) -> None:
        self.start_ns = start_ns
        self.weights = _minute_weights(start_ns, days, profile)
        self.cum = np.concatenate([[0.0], np.cumsum(self.weights)])
        self.day_open: npt.NDArray[np.bool_] = self.weights.reshape(days, 1440).sum(axis=1) > 0

    def times(self, u: F64) -> I64:
        """Map sorted quantiles in [0, 1) to sorted absolute timestamps (inverse activity CDF)."""
        x = u * self.cum[-1]
        minute = np.searchsorted(self.cum, x, side="right") - 1
        minute = np.clip(minute, 0, self.weights.size - 1)
        weight = self.weights[minute]
        frac = np.where(weight > 0, (x - self.cum[minute]) / np.where(weight > 0, weight, 1), 0)
        frac = np.clip(frac, 0.0, 1.0 - 1e-12)
        offset = minute * MINUTE_NS + (frac * MINUTE_NS).astype(np.int64)
        return np.asarray(self.start_ns + offset, dtype=np.int64)

    def open_units(self, day: int, grid_ns: int) -> tuple[I64, int]:
        """Open grid units of `day` (absolute ns) and grid cells per unit."""
        minutes = self.weights[day * 1440 : (day + 1) * 1440] > 0
        base = self.start_ns + day * DAY_NS
        if grid_ns < MINUTE_NS:
            units = base + np.flatnonzero(minutes).astype(np.int64) * MINUTE_NS
            return units, MINUTE_NS // grid_ns
        cells = minutes.reshape(-1, grid_ns // MINUTE_NS).any(axis=1)
        return base + np.flatnonzero(cells).astype(np.int64) * grid_ns, 1


def _roll_day(day_open: npt.NDArray[np.bool_], days: int, hint: int | None) -> int | None:
    if days < 2:
        return None
    target = max(1, days // 2)
    if hint is not None and 1 <= hint < target:
        target = hint
    candidates = [d for d in range(1, days) if day_open[d] and day_open[:d].any()]
    if not candidates:
        return None
    return min(candidates, key=lambda d: (abs(d - target), d))
