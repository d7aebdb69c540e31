"""The run report: per-file counts that reconcile, totals, JSON and a terminal table."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from histetl.errors import ReconciliationError
from histetl.outputs import write_json
from histetl.textable import render

COUNTS = ("records", "loaded", "duplicates", "quarantined", "skipped")


def new_run_id() -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{secrets.token_hex(3)}"


@dataclass
class FileReport:
    """One input file. `records` counts records decoded in this run, so for every file
    `records == loaded + duplicates + quarantined` (+ `valid` with --validate-only). A file the
    ledger says is already loaded is not decoded: records 0, `skipped` = its record count."""

    path: str
    dataset: str = ""
    schema: str = ""
    table: str = ""
    records: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    skipped: int = 0
    valid: int = 0  # rows that passed validation but were not loaded (--validate-only)
    rules: dict[str, int] = field(default_factory=dict)
    quarantine_file: str | None = None
    status: str = "pending"  # loaded | skipped | validated | failed
    error: str | None = None
    sha256: str | None = None
    seconds: float = 0.0

    def add_rules(self, counts: dict[str, int]) -> None:
        for name, n in counts.items():
            self.rules[name] = self.rules.get(name, 0) + n

    def reconcile(self) -> None:
        accounted = self.loaded + self.duplicates + self.quarantined + self.valid
        if self.records != accounted:
            raise ReconciliationError(
                f"records {self.records} != loaded {self.loaded} + duplicates "
                f"{self.duplicates} + quarantined {self.quarantined} + valid {self.valid}",
                where=self.path,
                hint="this is a histetl bug; please report it with the file",
            )

    @property
    def rows_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0


def display_names(paths: list[str]) -> list[str]:
    """Base names, unless two files share one: then every path relative to the folder they
    all share, the shortest form that tells them apart."""
    names = [Path(p).name for p in paths]
    if len(set(names)) == len(names):
        return names
    common = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    return [os.path.relpath(os.path.abspath(p), common) for p in paths]


@dataclass
class RunReport:
    run_id: str
    db: str
    mode: str = "load"  # load | validate-only
    files: list[FileReport] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    finished_at: str | None = None

    @property
    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(f, name) for f in self.files) for name in COUNTS}

    @property
    def failed(self) -> list[FileReport]:
        return [f for f in self.files if f.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "db": self.db,
            "mode": self.mode,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "files": [asdict(f) for f in self.files],
            "totals": self.totals,
        }

    def write_json(self, path: Path) -> None:
        """The report as JSON (atomically; through a symlink or FIFO), see histetl.outputs."""
        write_json(path, self.to_dict())

    def table(self) -> str:
        """A plain-text summary table, one row per file plus totals."""
        header = (
            "file",
            "schema",
            "records",
            "loaded",
            "dup",
            "quar",
            "skipped",
            "s",
            "rows/s",
            "status",
        )
        rows: list[tuple[str, ...]] = [header]
        for f, name in zip(self.files, display_names([f.path for f in self.files]), strict=True):
            rows.append(
                (
                    name,
                    f.schema,
                    *(str(getattr(f, c)) for c in COUNTS),
                    f"{f.seconds:.2f}",
                    f"{f.rows_per_second:,.0f}",
                    f.status,
                )
            )
        t = self.totals
        seconds = sum(f.seconds for f in self.files)
        rate = t["records"] / seconds if seconds > 0 else 0.0
        rows.append(
            ("TOTAL", "", *(str(t[c]) for c in COUNTS), f"{seconds:.2f}", f"{rate:,.0f}", "")
        )
        return render(rows, right=range(2, 9), rules=(0, len(rows) - 2))


def progress_summary(report: RunReport, total: int) -> str:
    """What an interrupted run did: files loaded (or validated), skipped, failed, not done."""
    counts = Counter(f.status for f in report.files)
    done = "loaded" if report.mode == "load" else "validated"
    rows = sum(f.loaded for f in report.files)
    parts = [f"{counts[done]} of {total} files {done}" + (f" ({rows:,} rows)" if rows else "")]
    parts += [f"{counts[s]} {s}" for s in ("skipped", "failed") if counts[s]]
    parts.append(f"{total - len(report.files)} not done (nothing of them is loaded)")
    return ", ".join(parts)
