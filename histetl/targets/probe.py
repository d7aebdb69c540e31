"""Light ledger reads for the pre-check (`histetl.precheck`): which of these files a target's
ledger already holds, read without the sinks' driver stack.

ADBC's DB-API layer imports pandas, Polars and pyarrow.dataset, which cost more than a rerun's
real work. These lookups use DuckDB's own module (read-only) and ADBC's low-level PostgreSQL
API with the sink's timeouts and stall watchdog. They only ever answer "already loaded": a
database file not made yet has loaded nothing, and any failure (a locked file, an unreachable
server, a missing ledger) returns None. The caller then runs the pipeline, whose sink checks
again under its lock and reports errors the usual way.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from loguru import logger

from histetl.errors import first_line
from histetl.secrets import scrub
from histetl.targets import LEDGER_TABLE, RetryPolicy, backend_of, duckdb_path


class Loaded(NamedTuple):
    """A ledger row, as much of it as a skipped file's report shows."""

    sha256: str
    table: str
    dataset: str
    schema: str
    records: int


_HEX = re.compile(r"[0-9a-f]{64}")
_PATIENCE_S = 2.0  # libpq's shortest connect_timeout


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
            return _duckdb(duckdb_path(uri), sql)
        if backend == "postgres":
            return _postgres(uri, sql, policy)
    except Exception as exc:
        logger.debug("ledger pre-check not used: {}", scrub(first_line(exc), uri))
    return None


def _duckdb(path: str, sql: str) -> list[Loaded] | None:
    if path == ":memory:":
        return None
    if not Path(path).exists():
        return []  # a database not made yet has loaded nothing
    import duckdb

    with contextlib.closing(duckdb.connect(path, read_only=True)) as con:
        rows = con.execute(sql).fetchall()
    return [Loaded(*row) for row in rows]


def _postgres(uri: str, sql: str, policy: RetryPolicy) -> list[Loaded]:
    import adbc_driver_manager as adbc
    import adbc_driver_postgresql
    import pyarrow as pa

    from histetl.targets.postgres.conn import StallGuard, socket_fds, with_timeouts

    # A lookup that only saves time gives up quickly: a slow or silent server is the
    # pipeline's to wait for (with its retries) and to report.
    policy = replace(
        policy,
        connect_timeout_s=min(policy.connect_timeout_s, _PATIENCE_S),
        timeout_s=min(policy.timeout_s, _PATIENCE_S) if policy.timeout_s else _PATIENCE_S,
    )
    before = socket_fds()
    with contextlib.ExitStack() as stack:
        database = stack.enter_context(adbc_driver_postgresql.connect(with_timeouts(uri, policy)))
        connection = stack.enter_context(adbc.AdbcConnection(database))
        guard = StallGuard(before)
        stack.callback(guard.close)
        statement = stack.enter_context(adbc.AdbcStatement(connection))
        statement.set_sql_query(sql)
        with guard.watch(policy.timeout_s):
            stream, _rows = statement.execute_query()
            table = pa.RecordBatchReader.from_stream(stream).read_all()
    return [Loaded(*row.values()) for row in table.to_pylist()]
