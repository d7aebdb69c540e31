"""The progress line: one redrawn status line per file on a terminal."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from histetl.logs import logger_level
from histetl.report import FileReport


class Progress:
    """One redrawn status line per file on a terminal (records, rate, ETA); nothing when
    stderr is not a terminal (cron, CI), where each file gets one log line instead."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty() and logger_level() <= 20
        self._started: dict[str, float] = {}
        self._drawn = False

    def update(self, report: FileReport, fraction: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        started = self._started.setdefault(report.path, now)
        elapsed = now - started
        rate = report.records / elapsed if elapsed > 0 else 0.0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        line = (
            f"{Path(report.path).name}: {fraction:6.1%}  {report.records:>12,} records  "
            f"{rate:>10,.0f}/s  ETA {eta:5.0f}s"
        )
        sys.stderr.write("\r" + line[: shutil.get_terminal_size().columns - 1])
        sys.stderr.flush()
        self._drawn = True

    def wrap(self, on_file: Callable[[FileReport], None]) -> Callable[[FileReport], None]:
        def done(report: FileReport) -> None:
            self.clear()
            on_file(report)

        return done

    def count(
        self, total: int, on_file: Callable[[FileReport], None]
    ) -> Callable[[FileReport], None]:
        """For a cluster, where per-batch progress stays on the workers: "N/M files"."""
        finished = 0

        def done(report: FileReport) -> None:
            nonlocal finished
            finished += 1
            on_file(report)
            if self.enabled:
                sys.stderr.write(f"\r{finished}/{total} files done across the cluster")
                sys.stderr.flush()
                self._drawn = True

        return done

    def clear(self) -> None:
        if self._drawn:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()
