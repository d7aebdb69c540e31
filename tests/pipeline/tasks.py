"""Per-file tasks for the executor tests. A light module: a spawned worker imports it to
unpickle the task, so it imports nothing heavy."""

from __future__ import annotations

import os
import time

from histetl.options import ReplayOptions
from histetl.report import FileReport
from histetl.source.files import Source


def slow_first(options: ReplayOptions, run_id: str, path: Source) -> FileReport:
    """The first file finishes last; `seconds` carries the worker's pid."""
    if str(path).endswith("0"):
        time.sleep(0.5)
    return FileReport(str(path), records=1, valid=1, status="validated", seconds=os.getpid())


def dies(options: ReplayOptions, run_id: str, path: Source) -> FileReport:
    os._exit(9)  # as the kernel's OOM killer would end it
