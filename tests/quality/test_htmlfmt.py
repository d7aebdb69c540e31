"""histetl.quality.htmlfmt: the page's text: escaped HTML tables, numbers, prices, UTC times and
durations, with a dash for what is missing."""

from __future__ import annotations

import pytest

from histetl.quality.htmlfmt import duration, esc, html_table, num, price, ts_text, when

DASH = "&mdash;"


def test_a_table_escapes_its_header_and_right_aligns_numeric_columns() -> None:
    table = html_table(["symbol <raw>", "rows"], [["ES.c.0", "1,200"], ["NQ.c.0", "7"]], {1})

    assert table == (
        "<table><thead><tr><th>symbol &lt;raw&gt;</th><th class='n'>rows</th></tr></thead>"
        "<tbody><tr><td>ES.c.0</td><td class='n'>1,200</td></tr>"
        "<tr><td>NQ.c.0</td><td class='n'>7</td></tr></tbody></table>"
    )


def test_a_table_without_rows_says_so() -> None:
    assert html_table(["a"], []) == "<p class='none'>Nothing to list.</p>"


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, ""), ("<script>&\"'", "&lt;script&gt;&amp;&quot;&#x27;"), (42, "42")],
)
def test_esc(value: object, text: str) -> None:
    assert esc(value) == text


@pytest.mark.parametrize(
    ("value", "text"), [(None, DASH), (0, "0"), (1234567, "1,234,567"), (-5, "-5"), (7.9, "7")]
)
def test_num(value: object, text: str) -> None:
    assert num(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, DASH), (4700.25, "4,700.25"), (4700.0, "4,700"), (0.00005, "0.0001"), (1.5, "1.5")],
)
def test_price_drops_trailing_zeros(value: object, text: str) -> None:
    assert price(value) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (None, DASH),
        (0, "1970-01-01 00:00:00.000"),
        (1_702_564_200_123_456_789, "2023-12-14 14:30:00.123"),  # milliseconds, truncated
    ],
)
def test_ts_text(ns: object, text: str) -> None:
    assert ts_text(ns) == text


@pytest.mark.parametrize(
    ("iso", "text"),
    [
        (None, "—"),
        ("", "—"),
        ("2023-12-14T14:30:00+00:00", "2023-12-14 14:30:00 UTC"),
        ("yesterday", "yesterday"),  # not ISO: shown as given
    ],
)
def test_when(iso: object, text: str) -> None:
    assert when(iso) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (None, DASH),
        (-1, "negative"),
        (0, "0 ns"),
        (999, "999 ns"),
        (1_500, "1.5 µs"),
        (2_500_000, "2.5 ms"),
        (1e9, "1.0 s"),
        (90e9, "1.5 min"),
        (99 * 3_600e9, "4.1 d"),
        (150 * 60e9, "2.5 h"),
        (150e9 * 100, "4.2 h"),
        (250 * 86_400e9, "250 d"),  # 100 and more: no decimal
        (1_234 * 86_400e9, "1,234 d"),
    ],
)
def test_duration_picks_the_largest_unit(ns: object, text: str) -> None:
    assert duration(ns) == text
