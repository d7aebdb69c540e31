"""Light ledger reads for the pre-check (`histetl.precheck`): which of these files a target's
ledger already holds, read without the sinks' driver stack (each target's `probe` module).

ADBC's DB-API layer imports pandas, Polars and pyarrow.dataset, which cost more than a rerun's
real work. These lookups use DuckDB's own module (read-only) and the PostgreSQL sink's own
client (ADBC's low-level API) with its timeouts and stall watchdog. They only ever answer
"already loaded": a database file not made yet has loaded nothing, and any failure (a locked
file, an unreachable server, a missing ledger) returns None. The caller then runs the
pipeline, whose sink checks again under its lock and reports errors the usual way.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import NamedTuple

from loguru import logger

from histetl.errors import first_line
from histetl.secrets import scrub
from histetl.targets import backend_of
from histetl.targets.base import LEDGER_TABLE, RetryPolicy
from histetl.targets.duckdb import duckdb_path


class Loaded(NamedTuple):
    """A ledger row, as much of it as a skipped file's report shows."""

    sha256: str
    table: str
    dataset: str
    schema: str
    records: int


_HEX = re.compile(r"[0-9a-f]{64}")


def loaded_files(uri: str, digests: Collection[str], policy: RetryPolicy) -> list[Loaded] | None:
    """The ledger rows of these sha256 digests, or None when the target cannot be read
    cheaply (the pipeline then decides)."""
    if not digests or not all(_HEX.fullmatch(d) for d in digests):
        return None
    sql = (
        f"SELECT sha256, target_table, dataset, schema, records FROM {LEDGER_TABLE} "
        f"WHERE sha256 IN ({', '.join(repr(d) for d in sorted(digests))})"
    )
    try:
        backend = backend_of(uri)
        if backend == "duckdb":
            from histetl.targets.duckdb.probe import ledger_rows as duckdb_rows

            rows = duckdb_rows(duckdb_path(uri), sql)
        elif backend == "postgres":
            from histetl.targets.postgres.probe import ledger_rows as postgres_rows

            rows = postgres_rows(uri, sql, policy)
        else:
            return None
        return None if rows is None else [Loaded(*row) for row in rows]
    except Exception as exc:
        logger.debug("ledger pre-check not used: {}", scrub(first_line(exc), uri))
    return None
