"""histetl.targets.postgres.probe: the pre-check's lookup over ADBC's low-level API, on the
session's real PostgreSQL, giving up within its own patience on a silent server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from histetl.targets.base import RetryPolicy
from histetl.targets.postgres.probe import ledger_rows


def test_rows_are_tuples_in_column_order(pg_uri: str) -> None:
    rows = ledger_rows(
        pg_uri,
        "SELECT 'ab' AS sha256, 'trades' AS t, 7::bigint AS n UNION ALL "
        "SELECT 'cd', 'mbp_1', 9 ORDER BY 1",
        RetryPolicy(),
    )

    assert rows == [("ab", "trades", 7), ("cd", "mbp_1", 9)]


def test_a_failed_statement_raises_for_the_caller_to_fall_back(pg_uri: str) -> None:
    with pytest.raises(Exception, match="histetl_ledger"):
        ledger_rows(pg_uri, "SELECT * FROM histetl_ledger", RetryPolicy())


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server that accepts connections and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_a_silent_server_is_given_up_on_after_two_seconds_whatever_the_policy(
    silent_port: int,
) -> None:
    patient = RetryPolicy(connect_timeout_s=60, timeout_s=600)
    uri = f"postgresql://histetl@127.0.0.1:{silent_port}/db"

    started = time.monotonic()
    with pytest.raises(Exception, match="timeout expired"):  # libpq connect_timeout
        ledger_rows(uri, "SELECT 1", patient)
    elapsed = time.monotonic() - started

    assert 1.5 < elapsed < 6
