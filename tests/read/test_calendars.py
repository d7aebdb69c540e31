"""histetl.read.calendars: trading sessions (built in, or a YAML file) as [open, close) ranges
across daylight saving time and holidays, `auto` by dataset, status-message sessions, and the
bucket arithmetic of verify's gap check and the quality page's silences."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from histetl.errors import ConfigError
from histetl.read.calendars import Calendar, buckets, calendar_for, covered, status_ranges

M = 60 * 10**9


def _utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * 10**9


def test_cme_calendar_follows_chicago_daylight_saving_time() -> None:
    cme = Calendar.load("cme-globex")

    winter = cme.ranges(_utc(2023, 12, 11), _utc(2023, 12, 12))
    summer = cme.ranges(_utc(2023, 7, 11), _utc(2023, 7, 12))

    assert [_utc(2023, 12, 10, 23), _utc(2023, 12, 11, 22)] in winter.tolist()  # CST
    assert [_utc(2023, 7, 10, 22), _utc(2023, 7, 11, 21)] in summer.tolist()  # CDT


def test_calendar_file_holidays_drop_the_session_closing_that_day(tmp_path: Path) -> None:
    path = tmp_path / "cal.yaml"
    path.write_text(
        "timezone: America/New_York\n"
        "sessions: [{days: [mon, tue, wed, thu, fri], open: '09:30', close: '16:00'}]\n"
        "holidays: [2023-12-25]\n"
    )

    ranges = Calendar.load(str(path)).ranges(_utc(2023, 12, 25), _utc(2023, 12, 27))

    assert ranges.tolist() == [[_utc(2023, 12, 26, 14, 30), _utc(2023, 12, 26, 21)]]


def test_calendar_file_with_an_unknown_key_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cal.yaml"
    path.write_text("timezone: UTC\nsessions: []\nopen_days: 5\n")

    with pytest.raises(ConfigError, match="open_days"):
        Calendar.load(str(path))


def test_buckets_and_covered_count_expected_bars_between_two_bars() -> None:
    sessions = np.array([[0, 10 * M], [11 * M, 20 * M + 1]], dtype=np.int64)
    expected = buckets(sessions, M)  # minutes 0-9 and 11-20 (20:00.000000001 opens minute 20)

    missing = covered(expected, np.array([3, 8, 12]), np.array([9, 12, 30]))

    assert expected.tolist() == [[0, 10], [11, 21]]
    assert missing.tolist() == [6, 3, 9]  # [3,9), [8,12) = 8,9,11, [12,30) = 12..20


def test_status_ranges_use_is_trading_then_action_and_the_calendar_before() -> None:
    calendar = np.array([[0, 100], [200, 300]], dtype=np.int64)
    ts = np.array([250, 260, 270, 280], dtype=np.int64)

    ranges = status_ranges(
        ts, ["N", None, "~", "Y"], np.array([0, 7, 8, 0], dtype=np.int64), calendar, 400
    )

    # calendar until 250, off at 250, TRADING (action 7) at 260, HALT (8) at 270, Y from 280
    assert ranges.tolist() == [[0, 100], [200, 250], [260, 270], [280, 400]]


def test_us_equity_calendar_is_weekdays_0930_to_1600_new_york() -> None:
    # Friday 2023-12-15 to Tuesday 2023-12-19 (EST, UTC-5): no weekend session
    ranges = Calendar.load("us-equity").ranges(_utc(2023, 12, 15), _utc(2023, 12, 19))

    assert ranges.tolist() == [
        [_utc(2023, 12, 15, 14, 30), _utc(2023, 12, 15, 21)],
        [_utc(2023, 12, 18, 14, 30), _utc(2023, 12, 18, 21)],
    ]


def test_24x7_calendar_is_one_merged_range_over_the_whole_span() -> None:
    ranges = Calendar.load("24x7").ranges(_utc(2023, 12, 15, 12), _utc(2023, 12, 18, 3))

    assert len(ranges) == 1
    assert ranges[0, 0] <= _utc(2023, 12, 15, 12)
    assert ranges[0, 1] >= _utc(2023, 12, 18, 3)


def test_cme_calendar_sunday_open_and_friday_close() -> None:
    ranges = Calendar.load("cme-globex").ranges(_utc(2023, 12, 15), _utc(2023, 12, 18))

    # Thursday 17:00 CT to Friday 16:00 CT, then nothing until Sunday 17:00 CT
    assert ranges.tolist() == [
        [_utc(2023, 12, 14, 23), _utc(2023, 12, 15, 22)],
        [_utc(2023, 12, 17, 23), _utc(2023, 12, 18, 22)],
    ]


def test_an_unknown_calendar_names_the_option_and_the_choices() -> None:
    with pytest.raises(ConfigError) as caught:
        Calendar.load("nyse-holidays")

    message = str(caught.value)
    assert "unknown calendar 'nyse-holidays'" in message
    assert "--calendar" in message
    assert "auto, cme-globex, us-equity, 24x7" in message


def test_a_calendar_file_with_an_unknown_time_zone_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cal.yaml"
    path.write_text("timezone: Mars/Olympus\nsessions: []\n")

    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        Calendar.load(str(path))


@pytest.mark.parametrize(
    ("datasets", "name"),
    [
        (["GLBX.MDP3"], "cme-globex"),
        (["XNAS.ITCH", "DBEQ.BASIC"], "us-equity"),
        (["GLBX.MDP3", "XNAS.ITCH"], None),  # two calendars: none applies to both
        (["OPRA.PILLAR"], None),  # no known calendar
        ([], None),
    ],
)
def test_auto_picks_the_calendar_of_the_datasets(datasets: list[str], name: str | None) -> None:
    calendar = calendar_for("auto", datasets)

    assert (calendar.name if calendar else None) == name


def test_a_named_calendar_is_used_whatever_the_datasets() -> None:
    calendar = calendar_for("24x7", ["GLBX.MDP3"])

    assert calendar is not None
    assert calendar.name == "24x7"


def test_buckets_merge_overlapping_ranges_and_covered_of_nothing_is_zero() -> None:
    ranges = np.array([[5 * M, 7 * M], [0, 3 * M + 1], [6 * M, 9 * M]], dtype=np.int64)

    assert buckets(ranges, M).tolist() == [[0, 4], [5, 9]]
    assert buckets(np.zeros((0, 2), dtype=np.int64), M).shape == (0, 2)
    empty = np.zeros((0, 2), dtype=np.int64)
    assert covered(empty, np.array([0, 5]), np.array([10, 6])).tolist() == [0, 0]
