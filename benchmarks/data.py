"""The benchmark data: seeded synthetic DBN files, generated once and cached.

Files are cached under `<data dir>/<hash of the histetl/synth/ package>/`, so a change to the
generator never measures stale data. Everything is clean data (no injected defects): every path
loads every row, so timings compare the same work.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from histetl import synth
from histetl.synth import SynthSpec, write_dbn

SYMBOLS = ("ES.c.0", "NQ.c.0")
DAYS = 5
DEFINITION_RECORDS = 100
DEFAULT_DIR = Path(tempfile.gettempdir()) / "histetl-bench-data"


@dataclass(frozen=True)
class Sizes:
    """Row counts of one run; `small` sizes are a quarter, for the memory comparison."""

    trades: int  # N: decode, zstd, DuckDB
    mbp1: int  # N/2: validation, DuckDB
    validate: int  # min(5M, N): validation throughput on trades
    pg: int  # min(3M, N): PostgreSQL load comparisons
    rowwise: int  # min(100k, pg): the row-wise loader (rows/s)

    @classmethod
    def for_rows(cls, rows: int) -> Sizes:
        pg = min(3_000_000, rows)
        return cls(rows, max(rows // 2, 1), min(5_000_000, rows), pg, min(100_000, pg))

    @staticmethod
    def small(n: int) -> int:
        return max(n // 4, 1)


def _generator_tag() -> str:
    digest = hashlib.sha256()
    for module in sorted(Path(synth.__file__).parent.glob("*.py")):
        digest.update(module.read_bytes())
    return digest.hexdigest()[:12]


class DataSet:
    """Seeded files by (schema, records, seed, compressed); generated on first use."""

    def __init__(self, root: Path = DEFAULT_DIR, fresh: bool = False) -> None:
        self.dir = root / _generator_tag()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.fresh = fresh
        self._made: set[Path] = set()

    def file(self, schema: str, records: int, seed: int = 1, zst: bool = False) -> Path:
        suffix = ".dbn.zst" if zst else ".dbn"
        path = self.dir / f"{schema}-{records}-s{seed}{suffix}"
        if path.exists() and not (self.fresh and path not in self._made):
            return path
        if schema == "definition":
            spec = SynthSpec(
                schema=schema,
                records=records,
                symbols=("ES.FUT",),
                stype_in="parent",
                days=DAYS,
                seed=seed,
            )
        else:
            spec = SynthSpec(schema=schema, records=records, symbols=SYMBOLS, days=DAYS, seed=seed)
        write_dbn(spec, path)  # appears only when complete
        self._made.add(path)
        return path

    def trades(self, records: int, zst: bool = False) -> Path:
        return self.file("trades", records, seed=1, zst=zst)

    def mbp1(self, records: int) -> Path:
        return self.file("mbp-1", records, seed=2)

    def definition(self) -> Path:
        return self.file("definition", DEFINITION_RECORDS, seed=3)
