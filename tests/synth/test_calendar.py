"""histetl.synth.calendar: the weekly session calendar (fixed UTC offsets, no DST, no holidays)
that spreads records over trading hours, and the roll day of continuous symbols."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from histetl.synth.calendar import _Calendar, _minute_weights, _roll_day

M = 60 * 10**9
H = 60 * M


def _day_ns(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * 86_400 * 10**9


FRIDAY = _day_ns(dt.date(2023, 12, 15))
THURSDAY = _day_ns(dt.date(2023, 12, 14))


def _runs(weights: np.ndarray, value: float) -> list[tuple[int, int]]:
    """[first, last] UTC minutes of each run of `value`."""
    minutes = np.flatnonzero(weights == value)
    breaks = np.flatnonzero(np.diff(minutes) > 1)
    starts = [minutes[0], *minutes[breaks + 1]]
    ends = [*minutes[breaks], minutes[-1]]
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def test_futures_close_friday_afternoon_until_sunday_evening_chicago_time() -> None:
    weights = _minute_weights(FRIDAY, 3, "future")  # Friday, Saturday, Sunday

    assert weights.size == 3 * 1440
    # Friday: open until 16:00 CT (22:00 UTC), regular hours 08:30-15:15 CT weigh 6
    assert _runs(weights, 6.0) == [(14 * 60 + 30, 21 * 60 + 14)]
    # closed from Friday 16:00 CT to Sunday 17:00 CT (23:00 UTC)
    assert _runs(weights, 0.0) == [(22 * 60, 2 * 1440 + 23 * 60 - 1)]
    assert _runs(weights, 1.0) == [(0, 14 * 60 + 29), (21 * 60 + 15, 21 * 60 + 59), (4260, 4319)]
    assert weights.sum() == 405 * 6 + (22 * 60 - 405) + 60


def test_futures_halt_daily_from_16_to_17_chicago_time() -> None:
    weights = _minute_weights(THURSDAY, 1, "future")

    assert _runs(weights, 0.0) == [(22 * 60, 23 * 60 - 1)]


def test_equities_trade_pre_regular_and_post_market_with_bursts_at_open_and_close() -> None:
    weights = _minute_weights(THURSDAY, 1, "equity")  # New York = UTC-5

    assert _runs(weights, 16.0) == [(14 * 60 + 30, 14 * 60 + 34), (20 * 60 + 55, 20 * 60 + 59)]
    assert _runs(weights, 4.0) == [(14 * 60 + 35, 20 * 60 + 54)]
    # pre-market 04:00-09:30 ET, post-market 16:00-20:00 ET (past midnight UTC)
    assert _runs(weights, 0.25) == [(0, 59), (9 * 60, 14 * 60 + 29), (21 * 60, 1439)]
    assert _runs(weights, 0.0) == [(60, 9 * 60 - 1)]


def test_auctions_happen_in_the_opening_and_closing_windows_only() -> None:
    weights = _minute_weights(THURSDAY, 1, "auction")

    assert _runs(weights, 3.0) == [(14 * 60 + 25, 14 * 60 + 29)]  # 09:25-09:30 ET
    assert _runs(weights, 6.0) == [(20 * 60 + 50, 20 * 60 + 59)]  # 15:50-16:00 ET
    assert int((weights > 0).sum()) == 15


@pytest.mark.parametrize(
    ("profile", "day"),
    [
        ("future", dt.date(2023, 12, 16)),  # Saturday (Sunday evening is open)
        ("equity", dt.date(2023, 12, 17)),  # Sunday (Saturday starts in Friday's post-market)
        ("auction", dt.date(2023, 12, 17)),
    ],
)
def test_a_range_without_any_session_is_uniform(profile: str, day: dt.date) -> None:
    weights = _minute_weights(_day_ns(day), 1, profile)

    assert weights.tolist() == [1.0] * 1440


def test_times_fall_in_open_minutes_sorted_and_inside_the_range() -> None:
    calendar = _Calendar(FRIDAY, 3, "future")

    ts = calendar.times(np.linspace(0.0, 1.0, 5_000, endpoint=False))

    assert calendar.day_open.tolist() == [True, False, True]
    assert (np.diff(ts) >= 0).all()
    assert ts.min() >= FRIDAY
    assert ts.max() < FRIDAY + 3 * 1440 * M
    minutes = (ts - FRIDAY) // M
    assert (calendar.weights[minutes] > 0).all()
    # regular hours weigh 6 against 1: their share of records is 2430 of 3405 weight units
    regular = (minutes >= 14 * 60 + 30) & (minutes < 21 * 60 + 15)
    assert abs(regular.mean() - 2430 / 3405) < 0.001


def test_open_units_are_open_minutes_below_a_minute_and_open_cells_above() -> None:
    calendar = _Calendar(FRIDAY, 3, "future")

    seconds, per_minute = calendar.open_units(0, 10**9)
    hours, per_hour = calendar.open_units(0, H)
    sunday, _ = calendar.open_units(2, H)

    assert (seconds.size, per_minute) == (22 * 60, 60)
    assert seconds[0] == FRIDAY
    assert seconds[-1] == FRIDAY + (22 * 60 - 1) * M
    assert per_hour == 1
    assert ((hours - FRIDAY) // H).tolist() == list(range(22))
    assert ((sunday - FRIDAY) // H).tolist() == [2 * 24 + 23]
    assert calendar.open_units(1, H)[0].size == 0  # Saturday


@pytest.mark.parametrize(
    ("day_open", "hint", "roll"),
    [
        ([True], None, None),  # one day: nothing to roll
        ([True] * 5, None, 2),  # the middle day
        ([True] * 5, 1, 1),  # the front contract expires before the middle day
        ([True] * 5, 4, 2),  # an expiry after the middle changes nothing
        ([True, False, False, True], None, 3),  # the nearest open day with trading before it
        ([False, False, True], None, None),  # no open day before the only open one
    ],
)
def test_roll_day(day_open: list[bool], hint: int | None, roll: int | None) -> None:
    assert _roll_day(np.array(day_open), len(day_open), hint) == roll
