"""SQL text shared by the sinks and the readers: quoted names and inlined literals.

Literals are inlined (not bound) where results must stream: the PostgreSQL driver streams with
COPY only for statements without bind parameters.
"""

from __future__ import annotations

import datetime as dt

from histetl.errors import ConfigError

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str | int) -> str:
    """A SQL literal (both backends): results stream only from statements without parameters."""
    if isinstance(value, int):
        return str(int(value))
    if "\x00" in value:
        raise ConfigError(f"NUL character in {value!r}")
    return "'" + value.replace("'", "''") + "'"


def ts_literal(ns: int) -> str:
    stamp = _EPOCH + dt.timedelta(seconds=ns // 10**9)
    return f"'{stamp:%Y-%m-%d %H:%M:%S}.{ns % 10**9:09d}+00'"
