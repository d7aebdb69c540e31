"""Log sinks. Only the CLI calls `configure`; library code just logs through loguru."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from loguru import logger

LOG_DIR_ENV = "HISTETL_LOG_DIR"


def log_dir() -> Path:
    """Where the rotating log file goes: $HISTETL_LOG_DIR, else ~/.local/state/histetl."""
    configured = os.environ.get(LOG_DIR_ENV)
    if configured:
        return Path(configured)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "histetl"


_level = 20  # INFO


def logger_level() -> int:
    """The stderr log level the CLI configured (10 debug, 20 info, 30 warning)."""
    return _level


def configure(verbose: bool = False, quiet: bool = False, json_logs: bool = False) -> None:
    global _level
    logger.remove()
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
        logger.add(
            directory / "histetl.log",
            level="DEBUG",
            rotation="10 MB",
            retention=5,
            serialize=json_logs,
            enqueue=False,
        )
    except OSError:
        logger.warning("cannot write the log file under {}; logging to stderr only", log_dir())
