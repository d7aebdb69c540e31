"""histetl.times: times as users type them (dates, times, offsets, nanoseconds) and as histetl
prints them, exact to the nanosecond."""

from __future__ import annotations

import pytest

from histetl.errors import ConfigError
from histetl.times import format_ns, parse_time

SCALE = 10**9


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2023-12-14", 1702512000 * SCALE),
        ("2023-12-14T14:30", (1702512000 + 14 * 3600 + 1800) * SCALE),
        ("2023-12-14 14:30:00.000000001Z", (1702512000 + 14 * 3600 + 1800) * SCALE + 1),
        ("2023-12-14T09:30:00-05:00", (1702512000 + 14 * 3600 + 1800) * SCALE),
        ("1702512000000000007", 1702512000 * SCALE + 7),
    ],
)
def test_parse_time_reads_dates_times_offsets_and_nanoseconds(text: str, ns: int) -> None:
    assert parse_time(text, "--start") == ns


def test_parse_time_rejects_garbage_naming_the_option() -> None:
    with pytest.raises(ConfigError, match="--end"):
        parse_time("2023-13-45", "--end")


@pytest.mark.parametrize(
    "text",
    ["", "2023-12-14T", "14:30", "2023-12-14T14:30:00.1234567891", "2023-12-14 +01:00", "1702512"],
)
def test_parse_time_error_says_what_it_read_and_what_it_accepts(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_time(text, "--start")

    message = str(caught.value)
    assert f"cannot read {text.strip()!r} as a time" in message
    assert "--start" in message
    assert "nanoseconds since the epoch" in message


def test_parse_time_strips_blanks_and_reads_compact_offsets() -> None:
    assert (
        parse_time("  2023-12-14T15:30+0100 ", "--end") == (1702512000 + 14 * 3600 + 1800) * SCALE
    )


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "1970-01-01T00:00:00Z"),
        (1702564200 * SCALE, "2023-12-14T14:30:00Z"),  # whole seconds print no fraction
        (1702564200 * SCALE + 1, "2023-12-14T14:30:00.000000001Z"),
        (1702564200 * SCALE + 120_000_000, "2023-12-14T14:30:00.120000000Z"),
        (-1, "1969-12-31T23:59:59.999999999Z"),
    ],
)
def test_format_ns_prints_utc_with_every_nanosecond_and_parses_back(ns: int, text: str) -> None:
    assert format_ns(ns) == text
    assert parse_time(text, "--start") == ns
