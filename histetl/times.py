"""Times as users type them and as histetl prints them: nanoseconds since the epoch, UTC."""

from __future__ import annotations

import datetime as dt
import re

from histetl.errors import ConfigError

_TIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def parse_time(text: str, where: str) -> int:
    """Nanoseconds since the epoch from `2023-12-14`, `2023-12-14T14:30`,
    `2023-12-14 14:30:00.123456789Z`, `...+01:00` (no offset means UTC) or integer ns."""
    text = text.strip()
    if re.fullmatch(r"-?\d{10,}", text):
        return int(text)
    match = _TIME.match(text)
    try:
        if match is None:
            raise ValueError(text)
        day, hour, minute, second, frac, offset = match.groups()
        stamp = dt.datetime.fromisoformat(
            f"{day}T{hour or '00'}:{minute or '00'}:{second or '00'}"
            + ("+00:00" if offset in (None, "Z") else offset)
        )
    except ValueError:
        raise ConfigError(
            f"cannot read {text!r} as a time",
            where=where,
            hint="use 2023-12-14, 2023-12-14T14:30, 2023-12-14T14:30:00.123456789Z, "
            "a +HH:MM offset, or nanoseconds since the epoch",
        ) from None
    seconds = (stamp - _EPOCH) // dt.timedelta(seconds=1)
    return seconds * 10**9 + int((frac or "0").ljust(9, "0"))


def format_ns(ns: int) -> str:
    stamp = _EPOCH + dt.timedelta(seconds=ns // 10**9)
    frac = ns % 10**9
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac:09d}" if frac else "") + "Z"
