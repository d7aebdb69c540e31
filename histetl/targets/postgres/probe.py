"""The ledger pre-check's light lookup on PostgreSQL: ADBC's low-level API (not its DB-API
layer, which imports pandas, Polars and pyarrow.dataset) with the sink's timeouts and stall
watchdog, giving up quickly."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from histetl.targets.base import RetryPolicy

_PATIENCE_S = 2.0  # libpq's shortest connect_timeout


def ledger_rows(uri: str, sql: str, policy: RetryPolicy) -> list[tuple[Any, ...]]:
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
    return [tuple(row.values()) for row in table.to_pylist()]
