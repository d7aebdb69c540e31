"""The pipeline observer of the quality report: each file's batches to its figures.

`histetl.pipeline.replay.Replayer` calls it (its `BatchObserver` protocol) with every batch's
valid and quarantined rows; a file's figures are kept only if the file ends well.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from histetl.quality.figures import FigureOptions, TableFigures
from histetl.report import FileReport
from histetl.schemas import TableSpec
from histetl.validate import RuleBook


@dataclass
class FileFigures:
    report: FileReport
    figures: TableFigures | None  # None: failed or skipped (nothing kept)
    rules: list[tuple[str, str]] = field(default_factory=list)  # (name, severity) that applied
    spans: list[tuple[int, int]] | None = None  # read from a database: the time spans read


class ReportObserver:
    """Feeds each batch of a file to its figures; keeps a file's figures only if it ends well.

    The pipeline calls `file_started` at every attempt at a file (a retry starts afresh),
    `batch` per batch with the valid rows and the quarantined rows, and `file_finished` once;
    a failed (rolled back) file keeps its counts but none of its figures."""

    def __init__(self, rules: RuleBook | None = None, options: FigureOptions | None = None) -> None:
        self.rules = rules or RuleBook.load()
        self.options = options or FigureOptions()
        self.files: list[FileFigures] = []
        self._current: dict[str, TableFigures] = {}  # by path: a retry starts afresh

    def file_started(self, report: FileReport) -> None:
        self._current.pop(report.path, None)

    def batch(
        self, report: FileReport, spec: TableSpec, valid: pl.DataFrame, invalid: pl.DataFrame
    ) -> None:
        figures = self._current.get(report.path)
        if figures is None:
            figures = self._current[report.path] = TableFigures(spec, report.dataset, self.options)
        figures.add(valid, invalid)

    def file_finished(self, report: FileReport) -> None:
        figures = self._current.pop(report.path, None)
        keep = figures if report.status in ("loaded", "validated") else None
        rules: list[tuple[str, str]] = []
        if figures is not None:
            applied = self.rules.for_file(figures.spec, report.dataset, None, None).rules
            rules = [(r.name, r.severity) for r in applied]
        self.files.append(FileFigures(report, keep, rules))
