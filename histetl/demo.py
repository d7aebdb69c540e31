"""`histetl demo`: generate a realistic sample day of futures data and load it.

The bundled sample data is generated (seeded, so every machine gets the same bytes) because
Databento's data may not be redistributed: two continuous futures over a roll, as trades, TBBO,
1-minute bars, statistics and definitions, one DBN file per schema and day, as `histetl run`
would keep them under raw_dir.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from histetl.sinks.duckdb import duckdb_path
from histetl.synth import SynthSpec, write_dbn

DEMO_START = dt.date(2023, 12, 14)
DEMO_DAYS = 3
DEMO_FILES: tuple[tuple[str, int, tuple[str, ...], str], ...] = (
    ("trades", 40_000, ("ES.c.0", "NQ.c.0"), "continuous"),
    ("tbbo", 20_000, ("ES.c.0", "NQ.c.0"), "continuous"),
    ("ohlcv-1m", 2_000, ("ES.c.0", "NQ.c.0"), "continuous"),
    ("statistics", 600, ("ES.c.0", "NQ.c.0"), "continuous"),
    ("definition", 20, ("ES.FUT",), "parent"),
)


def write_demo_files(raw_dir: Path) -> list[Path]:
    """Write (or keep, when already there) the demo's DBN files; returns their paths."""
    paths = []
    for seed, (schema, records, symbols, stype_in) in enumerate(DEMO_FILES):
        path = raw_dir / "GLBX.MDP3" / schema / f"glbx-mdp3-{DEMO_START:%Y%m%d}.{schema}.dbn.zst"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".partial")
            write_dbn(
                SynthSpec(
                    schema=schema,
                    records=records,
                    symbols=symbols,
                    stype_in=stype_in,
                    start=DEMO_START,
                    days=DEMO_DAYS,
                    seed=seed,
                ),
                tmp,
            )
            tmp.replace(path)
        paths.append(path)
    return paths


def duckdb_summary(uri: str, tables: list[str]) -> str:
    """Rows, symbols and time range per table of a DuckDB target."""
    lines = [f"{'table':<12} {'rows':>8}  {'symbols':<28} first .. last"]
    with duckdb.connect(duckdb_path(uri), read_only=True) as con:
        for table in dict.fromkeys(tables):
            time_col = "ts_event" if table.startswith("ohlcv") else "ts_recv"
            row = con.execute(
                f"SELECT count(*), string_agg(DISTINCT symbol, ',' ORDER BY symbol), "
                f"min({time_col})::VARCHAR, max({time_col})::VARCHAR FROM {table}"
            ).fetchone()
            if row is None:
                continue
            count, symbols, first, last = row
            lines.append(f"{table:<12} {count:>8}  {symbols!s:<28} {first} .. {last}")
    return "\n".join(lines)
