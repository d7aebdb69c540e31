"""The progress bar: one line per file on a terminal (rich), nothing elsewhere.

On a terminal (stderr is a TTY and the log level shows INFO) the file in progress gets a bar
with its records, rate and time left; it is erased when the file finishes, and the file's log
line takes its place. Without a terminal (cron, CI, a pipe) nothing is drawn and each file
gets one log line. rich is imported only when a bar is drawn.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histetl.logs import logger_level
from histetl.report import FileReport

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress


class Progress:
    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty() and logger_level() <= 20
        self._bar: RichProgress | None = None
        self._tasks: dict[str, Any] = {}

    def _start(self) -> RichProgress:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                TaskProgressColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
                transient=True,  # erased when stopped: the file's log line replaces it
            )
            self._bar.start()
        return self._bar

    def update(self, report: FileReport, fraction: float) -> None:
        if not self.enabled:
            return
        bar = self._start()
        task = self._tasks.get(report.path)
        if task is None:
            task = bar.add_task(Path(report.path).name, total=1.0, detail="")
            self._tasks[report.path] = task
        elapsed = bar.tasks[task].elapsed or 0.0
        rate = report.records / elapsed if elapsed > 0 else 0.0
        bar.update(task, completed=fraction, detail=f"{report.records:,} records  {rate:,.0f}/s")

    def wrap(self, on_file: Callable[[FileReport], None]) -> Callable[[FileReport], None]:
        def done(report: FileReport) -> None:
            self.clear()
            on_file(report)

        return done

    def count(
        self, total: int, on_file: Callable[[FileReport], None]
    ) -> Callable[[FileReport], None]:
        """For a cluster, where per-batch progress stays on the workers: files done of all."""
        finished = 0

        def done(report: FileReport) -> None:
            nonlocal finished
            finished += 1
            self.clear()
            on_file(report)
            if self.enabled:
                bar = self._start()
                task = bar.add_task("files done across the cluster", total=total, detail="")
                bar.update(task, completed=finished, detail=f"{finished}/{total}")
                self._tasks["cluster"] = task

        return done

    def clear(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._tasks.clear()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()
