"""The ledger pre-check's light lookup on PostgreSQL: the sink's own client (ADBC's low-level
API, no pandas or pyarrow.dataset), timeouts and stall watchdog, giving up quickly."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from histetl.targets.base import RetryPolicy

_PATIENCE_S = 2.0  # libpq's shortest connect_timeout


def ledger_rows(uri: str, sql: str, policy: RetryPolicy) -> list[tuple[Any, ...]]:
    from histetl.targets.postgres.conn import connect

    # A lookup that only saves time gives up quickly: a slow or silent server is the
    # pipeline's to wait for (with its retries) and to report.
    policy = replace(
        policy,
        connect_timeout_s=min(policy.connect_timeout_s, _PATIENCE_S),
        timeout_s=min(policy.timeout_s, _PATIENCE_S) if policy.timeout_s else _PATIENCE_S,
    )
    conn, guard = connect(uri, policy)
    with contextlib.ExitStack() as stack:
        stack.callback(conn.close)
        stack.callback(guard.close)
        cursor = stack.enter_context(conn.cursor())
        with guard.watch(policy.timeout_s):
            cursor.execute(sql)
            return cursor.fetchall()
