"""The ledger pre-check's light lookup in a DuckDB file: DuckDB's own module, read-only (a
database file not made yet has loaded nothing)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any


def ledger_rows(path: str, sql: str) -> list[tuple[Any, ...]] | None:
    if path == ":memory:":
        return None
    if not Path(path).exists():
        return []  # a database not made yet has loaded nothing
    import duckdb

    with contextlib.closing(duckdb.connect(path, read_only=True)) as con:
        return con.execute(sql).fetchall()
