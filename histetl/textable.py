"""Plain-text tables: aligned columns two spaces apart, for terminals, cron mail and grep.

One renderer for the run summary and the demo's table summary. Plain ASCII on purpose: the
output is read by scripts (`awk '{print $NF}'`) as often as by people; the progress bar is the
one place that draws (rich, terminals only).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def render(
    rows: Sequence[Sequence[str]], right: Collection[int] = (), rules: Collection[int] = ()
) -> str:
    """`rows` (the first is the header) as aligned columns; columns in `right` are right
    aligned, and a dashed rule follows each row index in `rules`."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n in rules:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)
