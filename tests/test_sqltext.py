"""histetl.sqltext: quoted names and inlined literals, checked by the database that reads them
(DuckDB here; the PostgreSQL sink and reader tests run the same text on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest

from histetl.errors import ConfigError
from histetl.sqltext import literal, quote, ts_literal


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        yield connection


@pytest.mark.parametrize("name", ["trades", 'we"ird', "mbp-1", "select", "Mixed Case", "ümlaut"])
def test_quote_makes_any_name_an_identifier(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.execute(f"CREATE TABLE {quote(name)} ({quote(name + '_col')} INTEGER)")

    assert con.execute("SELECT table_name FROM duckdb_tables()").fetchall() == [(name,)]
    assert con.execute(f"SELECT * FROM {quote(name)}").description[0][0] == name + "_col"


def test_quote_doubles_embedded_quotes() -> None:
    assert quote('a"b') == '"a""b"'


@pytest.mark.parametrize(
    "value", ["ES.c.0", "O'Brien", "'; DROP TABLE trades; --", "", "ümlaut", 'back\\slash"']
)
def test_string_literals_read_back_as_the_same_string(
    con: duckdb.DuckDBPyConnection, value: str
) -> None:
    assert con.execute(f"SELECT {literal(value)}").fetchone() == (value,)


def test_integer_literals_are_plain_numbers(con: duckdb.DuckDBPyConnection) -> None:
    assert literal(-42) == "-42"
    assert con.execute(f"SELECT {literal(2**63 - 1)}").fetchone() == (2**63 - 1,)


def test_a_nul_character_is_refused_as_a_config_error() -> None:
    with pytest.raises(ConfigError, match="NUL character in 'ES\\\\x00'"):
        literal("ES\x00")


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "'1970-01-01 00:00:00.000000000+00'"),
        (1702564200123456789, "'2023-12-14 14:30:00.123456789+00'"),
        (5, "'1970-01-01 00:00:00.000000005+00'"),
    ],
)
def test_ts_literal_keeps_every_nanosecond(
    con: duckdb.DuckDBPyConnection, ns: int, text: str
) -> None:
    assert ts_literal(ns) == text
    assert con.execute(f"SELECT epoch_ns(CAST({text} AS TIMESTAMP_NS))").fetchone() == (ns,)
