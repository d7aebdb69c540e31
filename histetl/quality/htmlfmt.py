"""Text of the quality page: HTML tables and cells, numbers with thousands separators, UTC
times and durations."""

from __future__ import annotations

import datetime as dt
import html
from typing import Any


def html_table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    if not rows:
        return "<p class='none'>Nothing to list.</p>"
    head = "".join(
        f"<th class='n'>{esc(h)}</th>" if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='n'>{c}</td>" if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def num(value: Any) -> str:
    return f"{int(value):,}" if value is not None else "&mdash;"


def price(value: Any) -> str:
    return f"{value:,.4f}".rstrip("0").rstrip(".") if value is not None else "&mdash;"


def ts_text(ns: Any) -> str:
    if ns is None:
        return "&mdash;"
    stamp = dt.datetime.fromtimestamp(int(ns) // 10**9, dt.UTC)
    return stamp.strftime("%Y-%m-%d %H:%M:%S") + f".{int(ns) % 10**9 // 10**6:03d}"


def when(iso: Any) -> str:
    if not iso:
        return "—"
    try:
        return dt.datetime.fromisoformat(str(iso)).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return str(iso)


def duration(ns: Any) -> str:
    if ns is None:
        return "&mdash;"
    ns = float(ns)
    if ns < 0:
        return "negative"
    for unit, size in (("d", 86_400e9), ("h", 3_600e9), ("min", 60e9), ("s", 1e9)):
        if ns >= size:
            whole = ns / size
            return f"{whole:,.1f} {unit}" if whole < 100 else f"{whole:,.0f} {unit}"
    if ns >= 1e6:
        return f"{ns / 1e6:,.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:,.1f} µs"
    return f"{ns:,.0f} ns"
