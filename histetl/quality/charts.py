"""Charts for the quality page: hand-written inline SVG, no plotting library.

Only what the page draws: one or more stacked panels of hourly series over a shared UTC time
axis, as steps (each hour drawn over its whole width) or lines (a point at each hour's middle),
on a linear axis from zero or a log axis. Axes, grid, UTC time ticks, thousands separators,
a legend per panel and a title; a gap of missing hours breaks the line instead of bridging
it. A series longer than `MAX_BUCKETS` hours is reduced to the minimum and maximum of each of
`MAX_BUCKETS` time buckets, so peaks stay visible and a year of data stays a few kilobytes.
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable, Sequence

MAX_BUCKETS = 800
_PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")
_W = 1100  # viewBox width
_LEFT, _RIGHT = 78, 16  # plot area margins
_TITLE_H = 30
_PANEL_H = 190  # one panel: label/legend line + plot
_PANEL_GAP = 26
_XAXIS_H = 44
_HOUR_STEPS = (1, 2, 3, 6, 12, 24, 48, 72, 7 * 24, 14 * 24)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

Series = dict[int, float]  # hour since the Unix epoch -> value
Scale = Callable[[float], float]


def chart(
    title: str,
    panels: Sequence[tuple[str, dict[str, Series]]],
    kind: str = "line",
    log: bool = False,
) -> str:
    """A figure of stacked panels sharing a UTC time axis (hours since the epoch), as SVG."""
    hours = [h for _, series in panels for points in series.values() for h in points]
    if not hours:
        return ""
    first, last = min(hours), max(hours) + 1
    if last - first < 3:  # a short span gets an hour of room either side
        first, last = first - 1, last + 1
    plot_w = _W - _LEFT - _RIGHT
    height = _TITLE_H + len(panels) * (_PANEL_H + _PANEL_GAP) - _PANEL_GAP + _XAXIS_H

    def x_of(hour: float) -> float:
        return _LEFT + (hour - first) * plot_w / (last - first)

    label = html.escape(title, quote=True)
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {_W} {height}' "
        f"font-family='system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif' "
        f"font-size='12' fill='#111827'><title>{label}</title>",
        f"<text x='4' y='18' font-size='14' font-weight='bold'>{label}</text>",
    ]
    ticks = _time_ticks(first, last)
    top = _TITLE_H
    for p, (panel_label, series) in enumerate(panels):
        y0, y1 = top + 22, top + _PANEL_H  # plot area, top to bottom
        values = [v for points in series.values() for v in points.values()]
        scale = _LogScale(values) if log else _LinearScale(values)

        def y_of(
            v: float, scale: _LinearScale | _LogScale = scale, y0: float = y0, y1: float = y1
        ) -> float:
            return y1 - scale.frac(v) * (y1 - y0)

        out.append(f"<text x='{_LEFT}' y='{top + 12}' fill='#374151' font-weight='600'>"
                   f"{html.escape(panel_label)}</text>")  # fmt: skip
        grid = [f"M{_LEFT} {y_of(v):.1f}H{_W - _RIGHT}" for v in scale.ticks]
        grid += [f"M{x_of(h):.1f} {y0}V{y1}" for h, _, _ in ticks]
        out.append(f"<path d='{''.join(grid)}' stroke='#e5e7eb' stroke-width='1' fill='none'/>")
        out.extend(
            f"<text x='{_LEFT - 6}' y='{y_of(v) + 4:.1f}' text-anchor='end' "
            f"fill='#4b5563'>{scale.label(v)}</text>"
            for v in scale.ticks
        )
        out.append(f"<path d='M{_LEFT} {y0}V{y1}H{_W - _RIGHT}' stroke='#9ca3af' fill='none'/>")
        named = sorted((n, pts) for n, pts in series.items() if pts)
        for i, (_, points) in enumerate(named):
            color = _PALETTE[i % len(_PALETTE)]
            path, dots = _series_path(points, kind, x_of, y_of, last - first)
            out.append(f"<path d='{path}' stroke='{color}' stroke-width='1.4' fill='none' "
                       "stroke-linejoin='round'/>")  # fmt: skip
            if dots:
                out.append(f"<g fill='{color}'>{dots}</g>")
        if len(named) > 1:
            out.append(_legend([n for n, _ in named], top + 12))
        if p == len(panels) - 1:
            out.extend(_x_labels(ticks, x_of, y1))
        top += _PANEL_H + _PANEL_GAP
    out.append(
        f"<text x='{_W - _RIGHT}' y='{height - 4}' text-anchor='end' fill='#6b7280'>"
        "time (UTC)</text></svg>"
    )
    return f"<div class='chart' role='img' aria-label='{label}'>{''.join(out)}</div>"


class _LinearScale:
    """From zero to a round maximum, about five ticks of 1, 2 or 5 x 10^k."""

    def __init__(self, values: list[float]) -> None:
        top = max([v for v in values if math.isfinite(v)] or [0.0])
        top = top if top > 0 else 1.0
        raw = top / 5
        mag = float(10 ** math.floor(math.log10(raw)))
        self.step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
        self.top = self.step * math.ceil(top / self.step - 1e-9)
        n = round(self.top / self.step)
        self.ticks = [i * self.step for i in range(n + 1)]

    def frac(self, v: float) -> float:
        return min(max(v / self.top, 0.0), 1.0)

    def label(self, v: float) -> str:
        return _number(v)


class _LogScale:
    """Whole decades around the positive values; ticks at 1, 2, 5 x 10^k (10^k when wide)."""

    def __init__(self, values: list[float]) -> None:
        pos = [v for v in values if v > 0 and math.isfinite(v)] or [1.0]
        self.lo = math.floor(math.log10(min(pos)))
        self.hi = max(math.ceil(math.log10(max(pos))), self.lo + 1)
        subs = (1, 2, 5) if self.hi - self.lo <= 3 else (1,)
        self.ticks = [
            s * 10.0**k for k in range(self.lo, self.hi + 1) for s in subs if k < self.hi or s == 1
        ]

    def frac(self, v: float) -> float:
        if v <= 0:
            return 0.0
        return min(max((math.log10(v) - self.lo) / (self.hi - self.lo), 0.0), 1.0)

    def label(self, v: float) -> str:
        return _number(v)


def _number(v: float) -> str:
    """Thousands separators; small values without float noise (0.25, 1.5, 0.001)."""
    if abs(v) >= 10 or v == int(v):
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _series_path(points: Series, kind: str, x_of: Scale, y_of: Scale, span: int) -> tuple[str, str]:
    """SVG path data for one series (a new subpath after each gap) and, when few, its dots."""
    hours = sorted(points)
    if len(hours) > MAX_BUCKETS * 2:
        return _bucketed_path(hours, points, x_of, y_of, span), ""
    parts: list[str] = []
    prev: int | None = None
    for h in hours:
        y = y_of(points[h])
        if kind == "step":
            start = "H" if prev is not None and h == prev + 1 else "M"
            if start == "H":
                parts.append(f"V{y:.1f}H{x_of(h + 1):.1f}")
            else:
                parts.append(f"M{x_of(h):.1f} {y:.1f}H{x_of(h + 1):.1f}")
        else:
            cmd = "L" if prev is not None and h == prev + 1 else "M"
            parts.append(f"{cmd}{x_of(h + 0.5):.1f} {y:.1f}")
        prev = h
    dots = ""
    if kind != "step" and len(hours) <= 150:
        dots = "".join(
            f"<circle cx='{x_of(h + 0.5):.1f}' cy='{y_of(points[h]):.1f}' r='2.2'/>" for h in hours
        )
    return "".join(parts), dots


def _bucketed_path(hours: list[int], points: Series, x_of: Scale, y_of: Scale, span: int) -> str:
    """Min and max of each time bucket, in time order, joined (a gap of a bucket breaks it)."""
    first = hours[0]
    buckets: dict[int, list[float]] = {}
    for h in hours:
        b = (h - first) * MAX_BUCKETS // max(span, 1)
        buckets.setdefault(b, []).append(points[h])
    width = max(span, 1) / MAX_BUCKETS
    parts: list[str] = []
    prev: int | None = None
    for b in sorted(buckets):
        vals = buckets[b]
        x = x_of(first + (b + 0.5) * width)
        cmd = "L" if prev is not None and b == prev + 1 else "M"
        parts.append(f"{cmd}{x:.1f} {y_of(min(vals)):.1f}L{x:.1f} {y_of(max(vals)):.1f}")
        prev = b
    return "".join(parts)


def _legend(names: list[str], y: float) -> str:
    """Swatches and names right-aligned above the plot (widths estimated from the text)."""
    items = []
    x = _W - _RIGHT
    for i, name in reversed(list(enumerate(names))):
        text = html.escape(name)
        x -= 7 * len(name) + 8
        items.append(f"<text x='{x:.0f}' y='{y}'>{text}</text>")
        x -= 18
        color = _PALETTE[i % len(_PALETTE)]
        items.append(f"<rect x='{x:.0f}' y='{y - 8}' width='14' height='4' fill='{color}'/>")
        x -= 14
    return "<g fill='#374151'>" + "".join(items) + "</g>"


def _time_ticks(first: int, last: int) -> list[tuple[int, str, str]]:
    """Ticks at round UTC hours or days: (hour, time or day line, date line or '')."""
    span = last - first
    step = next((s for s in _HOUR_STEPS if span / s <= 10), None)
    if step is None:  # months and more: a tick every k days, k a whole number of weeks
        step = 7 * 24 * math.ceil(span / (10 * 7 * 24))
    start = -(-first // step) * step
    if step >= 24 and step < 7 * 24:
        start = -(-first // 24) * 24
    elif step >= 7 * 24:  # weeks start on Monday (the epoch was a Thursday)
        monday = 4 * 24
        start = monday + -(-(first - monday) // step) * step
    out: list[tuple[int, str, str]] = []
    shown_day = shown_year = None
    for h in range(start, last + 1, step):
        t = dt.datetime.fromtimestamp(h * 3600, dt.UTC)
        day = f"{_MONTHS[t.month - 1]} {t.day}"
        if step < 24:
            line2 = ""
            if t.date() != shown_day:
                line2 = day if t.year == shown_year else f"{day}, {t.year}"
            out.append((h, f"{t.hour:02d}:00", line2))
        else:
            line2 = "" if t.year == shown_year else str(t.year)
            out.append((h, day, line2))
        shown_day, shown_year = t.date(), t.year
    return out


def _x_labels(ticks: list[tuple[int, str, str]], x_of: Scale, y1: float) -> list[str]:
    out = []
    for h, line1, line2 in ticks:
        x = x_of(h)
        out.append(f"<path d='M{x:.1f} {y1}v5' stroke='#9ca3af'/>")
        out.append(f"<text x='{x:.1f}' y='{y1 + 18}' text-anchor='middle' fill='#4b5563'>"
                   f"{line1}</text>")  # fmt: skip
        if line2:
            out.append(f"<text x='{x:.1f}' y='{y1 + 33}' text-anchor='middle' "
                       f"fill='#6b7280'>{line2}</text>")  # fmt: skip
    return out
