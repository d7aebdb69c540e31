"""Load targets, one folder per database (`duckdb/`, `postgres/`, `delta/`), and the one place
that maps a `--db` URI to its target: `open_sink` for loading, `open_reader` for reading back,
`display` for showing it, capabilities such as `single_writer`.

A sink creates tables on first use, loads one file per transaction with an idempotent merge (a
record already present is a duplicate, never a second row), and keeps a load ledger of the
files it loaded. A reader presents the loaded tables in canonical types (`histetl.read`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from histetl.errors import ConfigError
from histetl.secrets import is_dsn, redact, scrub
from histetl.targets.base import (
    LEDGER_COLUMNS,
    LEDGER_SELECT,
    LEDGER_TABLE,
    DbColumn,
    FileLoad,
    LedgerEntry,
    MergeRequired,
    Reader,
    RetryPolicy,
    Sink,
    TableTarget,
    TimescaleOptions,
    file_path,
    ledger_params,
    ledger_upsert_sql,
    local_path,
)

__all__ = [  # the shared records and protocols (targets.base), and the one redaction function
    "LEDGER_COLUMNS",
    "LEDGER_SELECT",
    "LEDGER_TABLE",
    "DbColumn",
    "FileLoad",
    "LedgerEntry",
    "MergeRequired",
    "Reader",
    "RetryPolicy",
    "Sink",
    "TableTarget",
    "TimescaleOptions",
    "file_path",
    "ledger_params",
    "ledger_upsert_sql",
    "local_path",
    "redact",
    "scrub",
]


def backend_of(uri: str) -> Literal["duckdb", "postgres", "delta"]:
    """Which target a URI names: duckdb:///..., postgresql://... (or postgres://), or a
    libpq key=value DSN (`host=... dbname=...`). ConfigError otherwise."""
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", uri)
    scheme = match.group(1).lower() if match else ""
    if scheme == "duckdb":
        return "duckdb"
    if scheme in ("delta", "delta+s3"):
        return "delta"
    if scheme in ("postgresql", "postgres") or (not scheme and is_dsn(uri)):
        return "postgres"
    raise ConfigError(
        f"unsupported database URI scheme {scheme!r} in {redact(uri)}"
        if scheme
        else f"not a database URI: {redact(uri)!r}",
        where="--db",
        hint="use duckdb:///path.duckdb, postgresql://user@host/db, a key=value DSN "
        "(host=... dbname=...), delta:///path/to/lake or delta+s3://bucket/prefix",
    )


def single_writer(uri: str) -> bool:
    """Whether one process at a time may write the target (DuckDB: no --workers, no cluster)."""
    return backend_of(uri) == "duckdb"


def display(uri: str) -> str:
    """The target as reports show it: a file target by its path, a server without secrets."""
    path = file_path(uri)
    return f"{uri.partition(':')[0].lower()}:///{path}" if path is not None else redact(uri)


def canonical_targets() -> list[TableTarget]:
    from histetl.schemas import all_specs

    return [TableTarget(s.table, s.arrow_schema, s.key, s.index_ts) for s in all_specs()]


def open_sink(
    uri: str, retry: RetryPolicy | None = None, timescale: TimescaleOptions | None = None
) -> Sink:
    if backend_of(uri) == "delta":
        need_deltalake()
        from histetl.targets.delta.sink import DeltaSink

        return DeltaSink(uri)
    if backend_of(uri) == "duckdb":
        from histetl.targets.duckdb.sink import DuckDBSink

        if timescale is not None:
            timescale.refuse(redact(uri), "is a DuckDB database (no hypertables or policies)")
        policy = retry or RetryPolicy()
        return DuckDBSink(uri, lock_timeout_s=policy.lock_timeout_s)
    from histetl.targets.postgres.sink import PostgresSink

    return PostgresSink(uri, retry=retry, timescale=timescale)


def read_ledger(uri: str, retry: RetryPolicy | None = None) -> list[LedgerEntry]:
    """The load ledger, oldest first; asking creates nothing. A database file or lake not
    made yet has loaded nothing; PostgreSQL's is read as `query` reads (a read-only role may
    ask: nothing is migrated); the others' through their sink."""
    path = file_path(uri)
    if path is not None and path != ":memory:" and not Path(path).exists():
        return []
    if backend_of(uri) == "postgres":
        from histetl.targets.postgres.read import open_postgres

        reader = open_postgres(uri, retry or RetryPolicy())
        try:
            return reader.ledger()
        finally:
            reader.close()
    sink = open_sink(uri, retry)
    try:
        return sink.ledger()
    finally:
        sink.close()


def open_reader(uri: str) -> Reader:
    """Read access to what a target holds (query, verify, status, the quality page)."""
    if backend_of(uri) == "delta":
        need_deltalake()
        from histetl.targets.delta.read import DeltaReader
        from histetl.targets.delta.sink import existing_lake

        return DeltaReader(existing_lake(uri))
    if backend_of(uri) == "duckdb":
        from histetl.targets.duckdb.read import open_duckdb

        return open_duckdb(uri)
    from histetl.targets.postgres.read import open_postgres

    return open_postgres(uri)


def need_deltalake() -> None:
    """Refuse a Delta Lake command in one line when the lake extra is not installed."""
    import importlib.util

    if importlib.util.find_spec("deltalake") is None:
        raise ConfigError(
            "Delta Lake targets need the deltalake package, which is not installed",
            where="--db",
            hint="install the lake extra: pip install 'histetl[lake]'",
        )
