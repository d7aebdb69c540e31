"""histetl.synth.instruments: contract months and expirations, outrights, calendar spreads and
equities, and the raw future symbols it parses."""

from __future__ import annotations

import datetime as dt

import pytest

from histetl.synth.instruments import (
    _FUTURES,
    _chain,
    _equity,
    _future_product,
    _outright,
    _parse_future,
    _spread,
    _third_friday,
)

FIXED = 10**9
ES = _FUTURES["ES"]


def _utc_ns(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * 10**9


@pytest.mark.parametrize(
    ("year", "month", "day"),
    [(2023, 12, 15), (2024, 3, 15), (2024, 6, 21), (2024, 9, 20), (2026, 5, 15)],
)
def test_third_friday(year: int, month: int, day: int) -> None:
    assert _third_friday(year, month) == dt.date(year, month, day)


def test_outright_is_named_by_month_code_and_expires_on_the_third_friday() -> None:
    front = _outright(ES, 2024, 3, 0)
    second = _outright(ES, 2024, 6, 1)

    assert (front.raw_symbol, front.kind, front.maturity) == ("ESH4", "future", (2024, 3))
    assert front.expiration == _utc_ns(2024, 3, 15, 13, 30)
    assert front.activation == _utc_ns(2022, 12, 16, 23)  # 455 days before expiry
    assert front.price == 4700 * FIXED
    assert front.tick == ES.tick == FIXED // 4
    # a later rank trades a little higher, still on the tick grid
    assert second.raw_symbol == "ESM4"
    assert second.price == 4718_750_000_000
    assert second.price % second.tick == 0


def test_spread_names_its_legs_and_trades_near_their_difference() -> None:
    front, back = _outright(ES, 2024, 3, 0), _outright(ES, 2024, 6, 1)

    spread = _spread(front, back)

    assert (spread.raw_symbol, spread.kind) == ("ESH4-ESM4", "spread")
    assert spread.legs == ("ESH4", "ESM4")
    assert spread.expiration == front.expiration
    assert spread.activation == back.activation  # the later leg's
    assert spread.price == 28 * FIXED  # 1.5 x 18.75, rounded to the tick
    assert spread.price % spread.tick == 0


@pytest.mark.parametrize(
    ("root", "on", "chain"),
    [
        ("ES", dt.date(2023, 12, 14), [(2023, 12), (2024, 3), (2024, 6)]),
        ("ES", dt.date(2023, 12, 15), [(2023, 12), (2024, 3), (2024, 6)]),  # expiry day
        ("ES", dt.date(2023, 12, 16), [(2024, 3), (2024, 6), (2024, 9)]),
        ("CL", dt.date(2023, 12, 14), [(2023, 12), (2024, 1), (2024, 2)]),  # monthly
        ("GC", dt.date(2024, 1, 2), [(2024, 2), (2024, 4), (2024, 6)]),
    ],
)
def test_chain_lists_the_next_unexpired_contract_months(
    root: str, on: dt.date, chain: list[tuple[int, int]]
) -> None:
    assert _chain(_FUTURES[root], on, 3) == chain


@pytest.mark.parametrize(
    ("raw", "symbol", "maturity"),
    [
        ("ESH4", "ESH4", (2024, 3)),
        ("ESZ3", "ESZ3", (2023, 12)),
        ("NQM9", "NQM9", (2029, 6)),  # one digit: the first such year from a year before start
        ("CLZ23", "CLZ3", (2023, 12)),  # two digits: 20xx, named with one digit as CME does
    ],
)
def test_parse_future_reads_one_or_two_year_digits(
    raw: str, symbol: str, maturity: tuple[int, int]
) -> None:
    contract = _parse_future(raw, dt.date(2023, 12, 14))

    assert contract is not None
    assert (contract.raw_symbol, contract.maturity) == (symbol, maturity)


def test_parse_future_of_a_non_future_is_none_and_unknown_roots_get_a_default_product() -> None:
    assert _parse_future("AAPL", dt.date(2023, 12, 14)) is None
    unknown = _parse_future("XXH4", dt.date(2023, 12, 14))
    assert unknown is not None
    assert unknown.product == _future_product("XX")
    assert (unknown.tick, unknown.price) == (FIXED // 100, 100 * FIXED)


def test_equities_have_no_expiration_and_a_cent_tick() -> None:
    known = _equity("AAPL", "XNAS")
    unknown = _equity("ZZZZ", "XNAS")

    assert (known.kind, known.price, known.tick) == ("equity", 197 * FIXED, FIXED // 100)
    assert known.expiration == known.activation == 2**64 - 1  # UNDEF_TIMESTAMP
    assert unknown.price == 70_960_000_000  # stable: from a hash of the symbol
    assert 20 * FIXED <= unknown.price < 300 * FIXED
