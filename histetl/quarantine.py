"""Quarantine: rows that broke an error rule, written to Parquet with the rules they broke.

Layout: `<dir>/<run_id>/<dataset>/<schema>/<source-file>.parquet`. Every original column is kept,
plus `rules_broken` (list of rule names), `ordinal` (0-based record index in the source file) and
`source_file`. A file is written only when something was quarantined, and removed again if the
source file turns out to be corrupt (nothing from a corrupt file is kept anywhere).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from histetl.mapping import to_arrow
from histetl.validate import RULES_COLUMN, SOURCE_COLUMN


def quarantine_path(root: Path, run_id: str, dataset: str, schema: str, source: Path) -> Path:
    return root / run_id / dataset / schema / f"{source.name}.parquet"


class QuarantineWriter:
    def __init__(self, path: Path, source: Path) -> None:
        self.path = path
        self._source = str(source)
        self._writer: pq.ParquetWriter | None = None
        self._tmp = path.with_name(path.name + ".partial")

    def write(self, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        table = to_arrow(frame.with_columns(pl.lit(self._source).alias(SOURCE_COLUMN)))
        if self._writer is None:
            self._tmp.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, table.schema, compression="zstd")
        self._writer.write_table(table.cast(self._writer.schema))

    def close(self) -> Path | None:
        """Finish the file; returns its path, or None when nothing was quarantined."""
        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        self._tmp.replace(self.path)
        return self.path

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._tmp.unlink(missing_ok=True)


def list_quarantine(root: Path) -> list[Path]:
    """Quarantine files under `root`, newest run first."""
    if not root.is_dir():
        return []
    return sorted(root.rglob("*.parquet"), key=lambda p: (p.parts[-4], str(p)), reverse=True)


def rule_counts(path: Path) -> dict[str, int]:
    """Rows per broken rule in one quarantine file."""
    frame = pl.read_parquet(path, columns=[RULES_COLUMN])
    counts = frame.explode(RULES_COLUMN).group_by(RULES_COLUMN).len().sort("len", descending=True)
    return {str(row[0]): int(row[1]) for row in counts.iter_rows()}


def sample(path: Path, rows: int = 10) -> pl.DataFrame:
    return pl.read_parquet(path, n_rows=rows)
