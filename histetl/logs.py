"""Log sinks. Only the CLI calls `configure`; library code just logs through loguru.

loguru (which imports asyncio) is imported by `configure`, not here: `histetl --help` and the
CLI's import chain stay light."""

from __future__ import annotations

import contextlib
import logging.handlers
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loguru import Record

LOG_DIR_ENV = "HISTETL_LOG_DIR"


def state_dir() -> Path:
    """histetl's folder for state kept between runs: $XDG_STATE_HOME/histetl, else
    ~/.local/state/histetl."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "histetl"


def log_dir() -> Path:
    """Where the rotating log file goes: $HISTETL_LOG_DIR, else the state folder."""
    configured = os.environ.get(LOG_DIR_ENV)
    return Path(configured) if configured else state_dir()


_level = 20  # INFO


class _LogFile(logging.handlers.RotatingFileHandler):
    """The rotating log file (10 MB, 5 kept). A write that fails (a full disk) warns once on
    stderr and turns the file off: never a traceback, never a failed run."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, maxBytes=10_000_000, backupCount=5, encoding="utf-8")
        self.broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.broken:
            if isinstance(record.msg, str) and record.msg.endswith("\n"):
                record.msg = record.msg[:-1]  # a --log-json record ends in one: no blank lines
            super().emit(record)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # the last flush on a full disk: already warned
            super().close()

    def handleError(self, record: logging.LogRecord) -> None:
        if self.broken:
            return
        self.broken = True
        exc = sys.exc_info()[1]
        reason = getattr(exc, "strerror", None) or exc
        sys.stderr.write(
            f"WARNING cannot write the log file {self.baseFilename}: {reason}; "
            "logging to stderr only\n"
        )


def logger_level() -> int:
    """The stderr log level the CLI configured (10 debug, 20 info, 30 warning)."""
    return _level


def configure(verbose: bool = False, quiet: bool = False, json_logs: bool = False) -> None:
    global _level
    from loguru import logger

    from histetl.textable import printable

    logger.remove()

    def escape(record: Record) -> None:
        record["message"] = printable(record["message"])

    logger.configure(patcher=escape)
    level = "DEBUG" if verbose else ("WARNING" if quiet else "INFO")
    _level = {"DEBUG": 10, "INFO": 20, "WARNING": 30}[level]
    logger.add(
        sys.stderr,
        level=level,
        serialize=json_logs,
        format="<level>{level: <7}</level> {message}",
        colorize=None,
    )
    try:
        directory = log_dir()
        directory.mkdir(parents=True, exist_ok=True)
        logger.add(_LogFile(directory / "histetl.log"), level="DEBUG", serialize=json_logs)
    except OSError:
        logger.warning("cannot write the log file under {}; logging to stderr only", log_dir())
