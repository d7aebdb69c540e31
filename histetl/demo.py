"""`histetl demo`: generate a realistic sample of futures data and load it.

The bundled sample data is generated (seeded, so every machine gets the same bytes) because
Databento's data may not be redistributed: two continuous futures over a roll, as trades, TBBO,
1-minute bars, statistics and definitions, one DBN file per schema and day, as `histetl run`
would keep them under raw_dir. The data is coherent, so `histetl verify` passes on it: every
instrument of the data has a definition (ES.FUT and NQ.FUT, each with its outrights and
calendar spread), and the 1-minute bars have one bar per instrument and minute of every CME
Globex session.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

from histetl.read.database import Database
from histetl.sqltext import quote
from histetl.synth import SynthSpec, grid_capacity, write_dbn
from histetl.textable import render
from histetl.times import format_ns

DEMO_START = dt.date(2023, 12, 14)
DEMO_DAYS = 3
DEMO_SYMBOLS = ("ES.c.0", "NQ.c.0")
FULL = 0  # records: every interval of the grid (one bar per instrument and minute)
DEMO_FILES: tuple[tuple[str, int, tuple[str, ...], str], ...] = (
    ("trades", 40_000, DEMO_SYMBOLS, "continuous"),
    ("tbbo", 20_000, DEMO_SYMBOLS, "continuous"),
    ("ohlcv-1m", FULL, DEMO_SYMBOLS, "continuous"),
    ("statistics", 600, DEMO_SYMBOLS, "continuous"),
    ("definition", 40, ("ES.FUT", "NQ.FUT"), "parent"),
)


def demo_specs() -> list[SynthSpec]:
    """The demo's files, as generator specs."""
    specs = []
    for seed, (schema, records, symbols, stype_in) in enumerate(DEMO_FILES):
        spec = SynthSpec(
            schema=schema,
            records=records,
            symbols=symbols,
            stype_in=stype_in,
            start=DEMO_START,
            days=DEMO_DAYS,
            seed=seed,
        )
        if records == FULL:
            spec = replace(spec, records=grid_capacity(spec))
        specs.append(spec)
    return specs


def write_demo_files(raw_dir: Path) -> list[Path]:
    """Write (or keep, when already there) the demo's DBN files; returns their paths."""
    paths = []
    for spec in demo_specs():
        schema = spec.schema
        path = raw_dir / "GLBX.MDP3" / schema / f"glbx-mdp3-{DEMO_START:%Y%m%d}.{schema}.dbn.zst"
        if not path.exists():
            write_dbn(spec, path)  # appears only when complete
        paths.append(path)
    return paths


def summary(uri: str, tables: list[str]) -> str:
    """Rows, symbols and time range per table of a DuckDB or PostgreSQL target."""
    found: list[tuple[str, int, str, str]] = []
    with Database.open(uri) as db:
        for table in dict.fromkeys(tables):
            if table not in db.tables():
                continue
            ns = db.time_ns("ts_event" if table.startswith("ohlcv") else "ts_recv")
            count, first, last = db.rows(
                f"SELECT count(*), min({ns}), max({ns}) FROM {quote(table)}"
            )[0]
            symbols = db.rows(
                f"SELECT DISTINCT symbol FROM {quote(table)} WHERE symbol IS NOT NULL ORDER BY 1"
            )
            span = f"{format_ns(first)} .. {format_ns(last)}" if count else "-"
            found.append((table, int(count), ",".join(str(r[0]) for r in symbols), span))
    header = ("table", "rows", "symbols", "first .. last")
    return render([header, *((t, str(n), sym, span) for t, n, sym, span in found)], right={1})
