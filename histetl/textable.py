"""Plain-text tables: aligned columns two spaces apart, for terminals, cron mail and grep.

One renderer for the run summary and the demo's table summary. Plain ASCII on purpose: the
output is read by scripts (`awk '{print $NF}'`) as often as by people; the progress bar is the
one place that draws (rich, terminals only).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

# control characters, and a newline that does not start an indented continuation ("  hint:")
_CONTROL = re.compile(r"\n(?!  )|[\x00-\x09\x0b-\x1f\x7f]")
_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def printable(text: str) -> str:
    """Text as a terminal should show it: control characters in a name that came from outside
    (a file name with a newline or an escape sequence) are escaped, so that it can neither
    forge a log line nor drive the terminal. Indented continuation lines stay lines."""
    return _CONTROL.sub(lambda m: _ESCAPES.get(m[0], f"\\x{ord(m[0]):02x}"), text)


def render(
    rows: Sequence[Sequence[str]], right: Collection[int] = (), rules: Collection[int] = ()
) -> str:
    """`rows` (the first is the header) as aligned columns; columns in `right` are right
    aligned, and a dashed rule follows each row index in `rules`."""
    rows = [[printable(cell).replace("\n", "\\n") for cell in row] for row in rows]
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
