"""Charts for the quality page: matplotlib's SVG backend, imported only when a page is drawn.

Text stays text (`svg.fonttype: none`), metadata and the XML prolog are stripped, paths are
simplified and hourly series thinned to at most `MAX_POINTS` points, so a month of one symbol
stays far below a megabyte.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
from collections.abc import Sequence
from typing import Any

from histetl.quality.figures import HOUR_NS

MAX_POINTS = 1_500
_PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")


def chart(
    title: str,
    panels: Sequence[tuple[str, dict[str, dict[int, float]]]],
    kind: str = "line",
    log: bool = False,
) -> str:
    """A figure of one or more stacked panels sharing a UTC time axis, as inline SVG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "histetl",
            "font.size": 9,
            "font.family": "sans-serif",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.color": "#e5e7eb",
            "path.simplify": True,
            "path.simplify_threshold": 0.5,
        }
    ):
        fig, axes = plt.subplots(
            len(panels), 1, figsize=(11, 2.3 * len(panels) + 0.5), sharex=True, squeeze=False
        )
        try:
            for ax, (label, series) in zip(axes[:, 0], panels, strict=True):
                for i, (name, points) in enumerate(sorted(series.items())):
                    if not points:
                        continue
                    hours = np.array(sorted(points), dtype=np.int64)
                    values = np.array([points[h] for h in hours], dtype=np.float64)
                    hours, values = _thin(hours, values)
                    color = _PALETTE[i % len(_PALETTE)]
                    if kind == "step":  # each hour drawn over its whole width, the last too
                        hours = np.append(hours, hours[-1] + 1)
                        values = np.append(values, values[-1])
                        x = (hours * HOUR_NS).astype("datetime64[ns]")
                        ax.step(x, values, where="post", label=name, color=color, lw=1.2)
                    else:
                        x = (hours * HOUR_NS).astype("datetime64[ns]")
                        ax.plot(x, values, label=name, color=color, lw=1.2, marker=".", ms=4)
                ax.set_ylabel(label)
                if log:
                    ax.set_yscale("log")
                    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                else:
                    ax.set_ylim(bottom=0)
                ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_tick_label))
                ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                if len(series) > 1:
                    ax.legend(
                        loc="lower right",
                        bbox_to_anchor=(1.0, 1.0),
                        frameon=False,
                        ncol=min(len(series), 6),
                        borderaxespad=0.1,
                    )
            first = min(min(p) for _, series in panels for p in series.values() if p)
            last = max(max(p) for _, series in panels for p in series.values() if p) + 1
            span = np.array([first - (last - first < 3), last + (last - first < 3)]) * HOUR_NS
            axes[0, 0].set_xlim(*span.astype("datetime64[ns]"))  # the data's hours, not years
            bottom = axes[-1, 0]
            locator = mdates.AutoDateLocator(tz=dt.UTC)  # type: ignore[no-untyped-call]
            bottom.xaxis.set_major_locator(locator)
            concise = mdates.ConciseDateFormatter(locator, tz=dt.UTC)  # type: ignore[no-untyped-call]
            bottom.xaxis.set_major_formatter(concise)
            bottom.set_xlabel("time (UTC)")
            fig.suptitle(title, x=0.01, ha="left", fontsize=11, fontweight="bold")
            fig.tight_layout()
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
        finally:
            plt.close(fig)
    svg = buf.getvalue()
    svg = re.sub(r"^<\?xml[^>]*>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    label = html.escape(title, quote=True)
    return f"<div class='chart' role='img' aria-label='{label}'>{svg}</div>"


def _tick_label(value: float, _pos: object) -> str:
    if value >= 10:
        return f"{value:,.0f}"
    return f"{value:.2g}"


def _thin(hours: Any, values: Any) -> tuple[Any, Any]:
    """At most MAX_POINTS points: every k-th hour (sums would change the unit)."""
    if len(hours) <= MAX_POINTS:
        return hours, values
    step = -(-len(hours) // MAX_POINTS)
    return hours[::step], values[::step]
