"""Trading sessions and time ranges: the calendars `verify` measures gaps against and the
quality page measures silences against, and the bucket arithmetic on [start, end) ranges.

Calendars: `cme-globex` (Sunday to Thursday 17:00 - 16:00 next day, America/Chicago),
`us-equity` (Monday to Friday 09:30 - 16:00, America/New_York), `24x7`, or a YAML file
(see `CalendarModel`); `auto` picks by the table's dataset in the ledger.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from histetl.config import load_model
from histetl.errors import ConfigError

Ranges = npt.NDArray[np.int64]  # (k, 2) sorted, disjoint [start, end) rows
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_OFF_ACTIONS = (8, 9, 10, 12, 13, 15)  # HALT, PAUSE, SUSPEND, CLOSE, POST_CLOSE, NOT_AVAILABLE
_TRADING_ACTION = 7
_EQUITY_VENUES = re.compile(
    r"^(XNAS|XNYS|ARCX|BATS|BATY|EDGA|EDGX|IEXG|XBOS|XPSX|XCHI|XCIS|MEMX|EPRL|XASE|DBEQ|EQUS)\."
)


# -- calendars ------------------------------------------------------------------------------------


class SessionModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]]
    open: str = Field(pattern=r"^\d{2}:\d{2}$")
    close: str = Field(pattern=r"^\d{2}:\d{2}$")  # at or before `open`: the next day


class CalendarModel(BaseModel):
    """A calendar file: weekly sessions in a time zone, and holidays (the session that would
    close on a holiday is dropped)."""

    model_config = ConfigDict(extra="forbid")
    timezone: str
    sessions: list[SessionModel]
    holidays: list[dt.date] = []


CALENDARS: dict[str, CalendarModel] = {
    "cme-globex": CalendarModel(
        timezone="America/Chicago",
        sessions=[
            SessionModel(days=["sun", "mon", "tue", "wed", "thu"], open="17:00", close="16:00")
        ],
    ),
    "us-equity": CalendarModel(
        timezone="America/New_York",
        sessions=[
            SessionModel(days=["mon", "tue", "wed", "thu", "fri"], open="09:30", close="16:00")
        ],
    ),
    "24x7": CalendarModel(
        timezone="UTC",
        sessions=[
            SessionModel(
                days=["mon", "tue", "wed", "thu", "fri", "sat", "sun"], open="00:00", close="00:00"
            )
        ],
    ),
}


class Calendar:
    def __init__(self, name: str, model: CalendarModel) -> None:
        self.name = name
        self.model = model
        try:
            self.zone = ZoneInfo(model.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"unknown time zone {model.timezone!r}",
                where=name,
                hint="an IANA name such as America/Chicago",
            ) from None

    @classmethod
    def load(cls, name: str) -> Calendar:
        if name in CALENDARS:
            return cls(name, CALENDARS[name])
        path = Path(name)
        if not path.is_file():
            raise ConfigError(
                f"unknown calendar {name!r}",
                where="--calendar",
                hint=f"one of {', '.join(['auto', *CALENDARS])}, or a calendar YAML file",
            )
        return cls(str(path), load_model(CalendarModel, path))

    def ranges(self, start_ns: int, end_ns: int) -> Ranges:
        """The sessions overlapping [start, end) as sorted, merged [open, close) ns ranges."""
        first = dt.datetime.fromtimestamp(start_ns // 10**9, dt.UTC).date() - dt.timedelta(days=2)
        last = dt.datetime.fromtimestamp(end_ns // 10**9, dt.UTC).date() + dt.timedelta(days=1)
        holidays = set(self.model.holidays)
        out: list[tuple[int, int]] = []
        day = first
        while day <= last:
            for session in self.model.sessions:
                if _WEEKDAYS[day.weekday()] not in session.days:
                    continue
                opens, closes = (
                    dt.time.fromisoformat(session.open),
                    dt.time.fromisoformat(session.close),
                )
                close_day = day + dt.timedelta(days=1) if closes <= opens else day
                if close_day in holidays:
                    continue
                o = _ns(dt.datetime.combine(day, opens, self.zone))
                c = _ns(dt.datetime.combine(close_day, closes, self.zone))
                if c > start_ns and o < end_ns:
                    out.append((o, c))
            day += dt.timedelta(days=1)
        return _merge(np.array(out, dtype=np.int64).reshape(-1, 2))


def _ns(stamp: dt.datetime) -> int:
    return int(stamp.timestamp()) * 10**9


def calendar_for(name: str, datasets: Sequence[str]) -> Calendar | None:
    """The named calendar, or with `auto` the one of the datasets (None: no known calendar)."""
    if name != "auto":
        return Calendar.load(name)
    names = set()
    for dataset in datasets:
        if dataset.startswith("GLBX."):
            names.add("cme-globex")
        elif _EQUITY_VENUES.match(dataset):
            names.add("us-equity")
        else:
            return None
    return Calendar.load(names.pop()) if len(names) == 1 else None


# -- ranges (bucket index arithmetic) -------------------------------------------------------------


def _merge(ranges: Ranges) -> Ranges:
    if len(ranges) == 0:
        return ranges.reshape(0, 2)
    ranges = ranges[np.argsort(ranges[:, 0], kind="stable")]
    ranges = ranges[ranges[:, 1] > ranges[:, 0]]
    if len(ranges) == 0:
        return ranges.reshape(0, 2)
    ends = np.maximum.accumulate(ranges[:, 1])
    new = np.concatenate([[True], ranges[1:, 0] > ends[:-1]])
    starts = ranges[new, 0]
    group = np.cumsum(new) - 1
    merged_ends = np.zeros(len(starts), dtype=np.int64)
    np.maximum.at(merged_ends, group, ranges[:, 1])
    return np.stack([starts, merged_ends], axis=1).astype(np.int64)


def buckets(ranges: Ranges, interval_ns: int) -> Ranges:
    """Time ranges -> ranges of bucket indexes whose [k*I, (k+1)*I) overlaps them."""
    if len(ranges) == 0:
        return ranges
    start = ranges[:, 0] // interval_ns
    end = -(-ranges[:, 1] // interval_ns)
    return _merge(np.stack([start, end], axis=1))


def covered(
    ranges: Ranges, lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """For each [lo, hi), how many integers lie inside the (merged) ranges."""
    if len(ranges) == 0:
        return np.zeros(len(lo), dtype=np.int64)
    starts, lengths = ranges[:, 0], ranges[:, 1] - ranges[:, 0]
    before = np.concatenate([[0], np.cumsum(lengths)])

    def upto(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        j = np.searchsorted(starts, x, side="right") - 1
        inside = np.clip(x - starts[np.maximum(j, 0)], 0, lengths[np.maximum(j, 0)])
        out: npt.NDArray[np.int64] = np.where(j < 0, 0, before[np.maximum(j, 0)] + inside)
        return out

    counts: npt.NDArray[np.int64] = np.maximum(upto(hi) - upto(lo), 0)
    return counts


def status_ranges(
    ts: npt.NDArray[np.int64],
    is_trading: Sequence[str | None],
    action: npt.NDArray[np.int64],
    calendar: Ranges,
    end_ns: int,
) -> Ranges:
    """Trading time from an instrument's status messages (sorted by ts): `is_trading` Y/N, else
    the action (TRADING on; HALT, PAUSE, SUSPEND, CLOSE... off), else unchanged. Before the first
    message, the calendar."""
    flag = pl.Series(
        [1 if t == "Y" else 0 if t == "N" else None for t in is_trading], dtype=pl.Int8
    )
    by_action = pl.Series(
        np.where(action == _TRADING_ACTION, 1, np.where(np.isin(action, _OFF_ACTIONS), 0, -1))
    )
    state = (
        pl.DataFrame({"flag": flag, "action": by_action})
        .select(
            pl.coalesce(pl.col("flag"), pl.when(pl.col("action") >= 0).then(pl.col("action")))
            .forward_fill()
            .fill_null(0)
        )
        .to_series()
        .to_numpy()
    )
    until = np.append(ts[1:], max(end_ns, int(ts[-1]) + 1))
    trading = np.stack([ts, until], axis=1)[state == 1]
    before = calendar.copy()
    before[:, 1] = np.minimum(before[:, 1], ts[0])
    return _merge(np.concatenate([before, trading.astype(np.int64)]))
