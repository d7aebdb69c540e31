"""The embedded default target: a DuckDB file (`duckdb:///path.duckdb`). `sink` loads, `read`
reads back, `probe` answers the ledger pre-check."""

from __future__ import annotations

from histetl.errors import LoadError
from histetl.targets.base import local_path


def duckdb_path(uri: str) -> str:
    """duckdb:///relative/path.duckdb, duckdb:////absolute/path.duckdb, duckdb:///:memory:"""
    return local_path(uri, "DuckDB", "use duckdb:///relative.duckdb or duckdb:////absolute.duckdb")


def message(exc: BaseException) -> str:
    """The first line of a DuckDB error, without the driver's class prefixes."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first.replace("INTERNAL: ", "").replace("IO Error: ", "")


def is_locked(exc: BaseException) -> bool:
    """DuckDB refused the file because another process holds its lock."""
    return "lock" in str(exc).lower()


def open_error(exc: BaseException, path: str) -> LoadError:
    """A file DuckDB cannot open for another reason than a lock: not a DuckDB file, cut
    short, unreadable."""
    return LoadError(
        f"cannot open DuckDB database: {message(exc)}",
        where=path,
        hint="check the path, its permissions, and that it is a DuckDB file",
    )
