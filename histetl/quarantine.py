"""Quarantine: rows that broke an error rule, written to Parquet with the rules they broke.

Layout: `<dir>/<run_id>/<dataset>/<schema>/<source-file>.<hash>.parquet`, where `<hash>` is a
short hash of the source file's resolved path, so two inputs with the same name in different
folders never overwrite each other. Names that come from a file (dataset, schema) are data,
never a path: they are reduced to `[A-Za-z0-9._-]` without leading dots, and the final path is
checked to be inside the quarantine folder. Every original column is kept, plus `rules_broken`
(list of rule names), `ordinal` (0-based record index in the source file) and `source_file`;
the Parquet metadata keeps the schema, dataset and the expressions of the file's rules.

A file is written as `<name>.<pid>.partial` and renamed when complete; it is written only when
something was quarantined, and removed again if the source file fails (nothing from a failed
file is kept anywhere, except the evidence of a file rejected by `on_invalid: fail`). Partial
files whose writing process is gone (a killed run) are removed at the start of the next run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from histetl.errors import HistetlError, first_line
from histetl.mapping import to_arrow
from histetl.outputs import OutputError, pid_alive
from histetl.validate import INDEX_TS, ORDINAL_COLUMN, RULES_COLUMN, SOURCE_COLUMN, Rule

PARTIAL_SUFFIX = ".partial"
META_KEY = b"histetl"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_PARTIAL = re.compile(r"\.(\d+)\.partial$")
_LEGACY_PARTIAL_AGE_S = 3600  # partial files of older versions carry no pid


def safe_name(text: str, limit: int = 120) -> str:
    """A name from a file as one harmless path component: [A-Za-z0-9._-], no leading dot,
    never `.` or `..`."""
    name = re.sub(r"\.{2,}", "_", _UNSAFE.sub("_", text)).lstrip(".")
    return name[:limit] or "_"


def quarantine_path(root: Path, run_id: str, dataset: str, schema: str, source: Path | str) -> Path:
    """`source`: a local file, or an s3:// URL."""
    where = source if isinstance(source, str) else str(source.resolve())
    digest = hashlib.sha256(where.encode()).hexdigest()[:8]
    parts = (safe_name(run_id), safe_name(dataset), safe_name(schema))
    name = source.rsplit("/", 1)[-1] if isinstance(source, str) else source.name
    path = root.joinpath(*parts, f"{safe_name(name)}.{digest}.parquet")
    base = root.resolve()
    if not path.resolve().is_relative_to(base):  # e.g. a symlink planted inside the folder
        raise OutputError(
            f"quarantine file {path} would be outside {base}",
            where=str(source),
            hint="remove the links under the quarantine folder, or choose another one",
        )
    return path


class QuarantineWriter:
    def __init__(
        self,
        path: Path,
        source: Path | str,
        *,
        schema: str = "",
        dataset: str = "",
        rules: tuple[Rule, ...] = (),
    ) -> None:
        self.path = path
        self._source = str(source)
        self._writer: pq.ParquetWriter | None = None
        self._tmp = path.with_name(f"{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")
        self._published = False
        self._meta = json.dumps(
            {"schema": schema, "dataset": dataset, "rules": {r.name: r.expr for r in rules}}
        ).encode()

    def _fail(self, exc: OSError) -> OutputError:
        self.discard()
        return OutputError(
            f"cannot write quarantine file {self.path}: {exc.strerror or exc}",
            where=self._source,
            hint="free some space or choose another --quarantine-dir; nothing from this file "
            "was loaded",
        )

    def write(self, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        table = to_arrow(frame.with_columns(pl.lit(self._source).alias(SOURCE_COLUMN)))
        try:
            if self._writer is None:
                self._tmp.parent.mkdir(parents=True, exist_ok=True)
                schema = table.schema.with_metadata({META_KEY: self._meta})
                self._writer = pq.ParquetWriter(self._tmp, schema, compression="zstd")
            self._writer.write_table(table.cast(self._writer.schema))
        except OSError as exc:
            raise self._fail(exc) from None

    def close(self) -> Path | None:
        """Finish the file; returns its path, or None when nothing was quarantined."""
        if self._writer is None:
            return None
        try:
            self._writer.close()
            self._writer = None
            self._tmp.replace(self.path)
        except OSError as exc:
            raise self._fail(exc) from None
        self._published = True
        return self.path

    def discard(self) -> None:
        """Remove everything this writer wrote (also a file already closed)."""
        if self._writer is not None:
            with contextlib.suppress(OSError):  # removed below anyway
                self._writer.close()
            self._writer = None
        self._tmp.unlink(missing_ok=True)
        if self._published:
            self.path.unlink(missing_ok=True)
            self._published = False


def remove_stale_partials(root: Path) -> list[Path]:
    """Remove partial quarantine files left by killed runs: those whose writer's pid is not
    alive (a concurrent run's files are kept). Returns what was removed."""
    if not root.is_dir():
        return []
    removed = []
    now = time.time()
    for path in root.rglob(f"*{PARTIAL_SUFFIX}"):
        match = _PARTIAL.search(path.name)
        try:
            stale = (
                not pid_alive(int(match[1]))
                if match
                else now - path.stat().st_mtime > _LEGACY_PARTIAL_AGE_S
            )
            if stale:
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def list_quarantine(root: Path) -> list[Path]:
    """Quarantine files under `root`, newest run first."""
    if not root.is_dir():
        return []
    files = [p for p in root.rglob("*.parquet") if len(p.relative_to(root).parts) >= 4]
    return sorted(files, key=lambda p: (p.parts[-4], str(p)), reverse=True)


def check_file(path: Path) -> list[str]:
    """The columns of a quarantine file; a file that is not one is a clear error."""
    try:
        names: list[str] = list(pq.read_schema(path).names)
    except (OSError, pa.ArrowException) as exc:
        raise HistetlError(
            f"not a readable quarantine file: {first_line(exc, 200)}",
            where=str(path),
            hint="give a .parquet file written by histetl (see `histetl quarantine`)",
        ) from None
    if RULES_COLUMN not in names:
        raise HistetlError(
            f"not a quarantine file: no {RULES_COLUMN} column",
            where=str(path),
            hint="give a .parquet file written by histetl (see `histetl quarantine`)",
        )
    return names


def rule_counts(path: Path) -> dict[str, int]:
    """Rows per broken rule in one quarantine file."""
    check_file(path)
    frame = pl.read_parquet(path, columns=[RULES_COLUMN])
    counts = frame.explode(RULES_COLUMN).group_by(RULES_COLUMN).len().sort("len", descending=True)
    return {str(row[0]): int(row[1]) for row in counts.iter_rows()}


def rule_expressions(path: Path) -> dict[str, str]:
    """The expressions of the rules that applied to the quarantined file (from its Parquet
    metadata; empty for files written before histetl kept them)."""
    meta = pq.read_schema(path).metadata or {}
    try:
        rules = json.loads(meta.get(META_KEY, b"{}")).get("rules", {})
    except (ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in rules.items()} if isinstance(rules, dict) else {}


def rule_columns(expr: str, columns: list[str]) -> list[str]:
    """The columns of `columns` an expression reads (`_index_ts` stands for the index
    timestamp, ts_recv or ts_event)."""
    try:
        names = pl.sql_expr(expr).meta.root_names()
    except Exception:  # polars raises several error types for bad SQL
        return []
    out: list[str] = []
    for name in names:
        if name == INDEX_TS:
            out += [c for c in ("ts_recv", "ts_event") if c in columns][:1]
        elif name in columns:
            out.append(name)
    return list(dict.fromkeys(out))


def column_order(path: Path) -> list[str]:
    """Columns to show first: the rules broken, then the columns the broken rules read (most
    broken rule first), the ordinal, then the rest."""
    columns = check_file(path)
    expressions = rule_expressions(path)
    counts = rule_counts(path)
    read = [c for rule in counts for c in rule_columns(expressions.get(rule, ""), columns)]
    first = [RULES_COLUMN, *read, ORDINAL_COLUMN]
    first = [c for c in dict.fromkeys(first) if c in columns]
    return first + [c for c in columns if c not in first]


def sample(path: Path, rows: int = 10) -> pl.DataFrame:
    """The first `rows` rows, broken rules (joined) and the columns they read first."""
    frame = pl.read_parquet(path, n_rows=rows).select(column_order(path))
    return frame.with_columns(pl.col(RULES_COLUMN).list.join(","))
