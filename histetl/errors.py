"""One small error hierarchy: every error says what went wrong, where, and what to do next.

`TransientError` marks failures worth retrying (network, a dropped database connection);
everything else is terminal. The CLI turns any `HistetlError` into a one-line message and an
exit code; a traceback means a bug.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_QUARANTINED = 3
EXIT_SIGINT = 130  # 128 + SIGINT, as shells report a Ctrl-C


FULL_DISK_HINT = "the disk is full: free space there and rerun"


def full_disk(exc: BaseException) -> bool:
    """Whether a failure is the operating system's ENOSPC, however a driver words around it."""
    return "no space left on device" in str(exc).lower()


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (its class name when it has none), for
    one-line errors that wrap a library's multi-line message."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


class HistetlError(Exception):
    """Base class: `what` happened, `where` (file, key, host), and `hint` (what to do next)."""

    exit_code = EXIT_FAILED

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.what = what
        self.where = where
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = f"{self.where}: {self.what}" if self.where else self.what
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class TransientError(HistetlError):
    """Marker for failures that may succeed when retried."""


class ConfigError(HistetlError):
    """A bad job file, mapping, rule set or command-line value. Raised before any work."""

    exit_code = EXIT_USAGE


class DecodeError(HistetlError):
    """A DBN file is truncated, corrupt or of a kind histetl does not read."""

    def __init__(
        self, path: Path | str, what: str, *, offset: int | None = None, hint: str | None = None
    ) -> None:
        self.path = str(path)
        self.offset = offset
        where = self.path if offset is None else f"{self.path} at byte {offset}"
        super().__init__(
            what,
            where=where,
            hint=hint or "nothing from this file was loaded; re-download or re-export it",
        )


class UnsupportedSchemaError(DecodeError):
    """The file's schema has no canonical table."""


class SourceError(HistetlError):
    """Fetching from the Databento API failed for a reason retrying will not fix."""


class TransientSourceError(SourceError, TransientError):
    """Fetching failed in a way worth retrying (429, 5xx, connection reset)."""


class LoadError(HistetlError):
    """Writing to the target database failed."""


class TransientLoadError(LoadError, TransientError):
    """The database was unreachable or dropped the connection."""


class ReconciliationError(HistetlError):
    """records != loaded + duplicates + quarantined: a bug, never a data problem."""


class TerminalLoadError(LoadError):
    """The database refused in a way retrying will not fix: authentication, a missing
    database or role, permission denied, a bad parameter. Fails at once, never retried."""


class DatabaseTimeoutError(TransientLoadError):
    """The database did not answer within a timeout (connect, a silent server)."""
