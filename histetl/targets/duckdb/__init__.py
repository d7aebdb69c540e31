"""The embedded default target: a DuckDB file (`duckdb:///path.duckdb`). `sink` loads, `read`
reads back, `probe` answers the ledger pre-check."""

from __future__ import annotations

from histetl.targets.base import local_path


def duckdb_path(uri: str) -> str:
    """duckdb:///relative/path.duckdb, duckdb:////absolute/path.duckdb, duckdb:///:memory:"""
    return local_path(uri, "DuckDB", "use duckdb:///relative.duckdb or duckdb:////absolute.duckdb")
