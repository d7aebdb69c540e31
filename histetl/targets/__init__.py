"""Load targets. A sink creates tables on first use, loads one file per transaction with an
idempotent merge (a record already present is a duplicate, never a second row), and keeps a
load ledger of the files it loaded."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from histetl.errors import ConfigError
from histetl.secrets import is_dsn, redact, scrub

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["redact", "scrub"]  # the one redaction function, re-exported for its old users

LEDGER_TABLE = "histetl_ledger"
LEDGER_COLUMNS = (
    "sha256",
    "target_table",
    "path",
    "dataset",
    "schema",
    "records",
    "loaded",
    "duplicates",
    "quarantined",
    "run_id",
    "loaded_at",
)
LEDGER_SELECT = f"SELECT {', '.join(LEDGER_COLUMNS)} FROM {LEDGER_TABLE}"


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait for the database, and how often to try again.

    Transient failures (unreachable, a dropped connection, a silent server, a deadlock) are
    retried per file with capped, jittered exponential backoff; terminal ones (a wrong
    password, a missing database or role, permission denied) fail at once.

    - connect_timeout_s: libpq `connect_timeout` (a URI's own `connect_timeout` wins).
    - timeout_s: the longest the server may stay silent, with no answer and no progress, on
      one statement (a stopped or partitioned server); 0 disables. A COPY that keeps
      streaming is never cut. Also the server's `idle_in_transaction_session_timeout`.
    - lock_timeout_s: the longest wait for another loader's lock (PostgreSQL `lock_timeout`
      on the day/table locks, DuckDB's file lock); 0 waits forever.
    """

    max_attempts: int = 5
    max_wait_s: float = 30.0
    connect_timeout_s: float = 10.0
    timeout_s: float = 300.0
    lock_timeout_s: float = 300.0


@dataclass(frozen=True)
class TimescaleOptions:
    """Hypertable settings (TimescaleDB only); intervals in PostgreSQL syntax ("7 days")."""

    chunk_interval: str = "1 day"
    compress_after: str | None = None  # add a compression policy
    retain_for: str | None = None  # add a retention policy (drops older chunks)
    given: tuple[str, ...] = ()  # the options the user set (e.g. "--retain-for"), for errors

    def refuse(self, target: str, why: str) -> None:
        """ConfigError when the user asked for settings `target` cannot apply."""
        if self.given:
            raise ConfigError(
                f"{', '.join(self.given)} need TimescaleDB, but {target} {why}",
                where=self.given[0],
                hint="drop these options, or point --db at a PostgreSQL server with the "
                "timescaledb extension",
            )


@dataclass(frozen=True)
class TableTarget:
    """What a sink needs to know about a target table."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    time_column: str


@dataclass(frozen=True)
class LedgerEntry:
    sha256: str
    table: str
    path: str
    dataset: str
    schema: str
    records: int
    loaded: int
    duplicates: int
    quarantined: int
    run_id: str
    loaded_at: dt.datetime


def ledger_upsert_sql(placeholders: list[str]) -> str:
    """INSERT of a ledger row that replaces an earlier one (a --force reload)."""
    updates = ", ".join(
        f"{c} = excluded.{c}" for c in LEDGER_COLUMNS[2:] if c not in ("dataset", "schema")
    )
    return (
        f"INSERT INTO {LEDGER_TABLE} ({', '.join(LEDGER_COLUMNS)}) VALUES "
        f"({', '.join(placeholders)}) ON CONFLICT (sha256, target_table) DO UPDATE SET "
        f"{updates}"
    )


def ledger_params(entry: LedgerEntry) -> tuple[object, ...]:
    return (
        entry.sha256,
        entry.table,
        entry.path,
        entry.dataset,
        entry.schema,
        entry.records,
        entry.loaded,
        entry.duplicates,
        entry.quarantined,
        entry.run_id,
        entry.loaded_at.astimezone(dt.UTC),
    )


class MergeRequired(Exception):
    """An optimistic direct load met a row that is already there: replay the file in merge
    mode (the sink has rolled back)."""


class FileLoad(Protocol):
    """One file's load: a transaction that either commits with its ledger row or leaves
    nothing behind."""

    def write_stream(self, batches: Iterator[pa.Table]) -> int:
        """Merge every row of the stream (tables of the target's schema); returns how many
        were new (the rest were duplicates). Raises MergeRequired (rolled back) when an
        optimistic direct load met existing rows."""

    def commit(self, entry: LedgerEntry) -> LedgerEntry:
        """Commit the rows with their ledger record; returns the record as stored. A target
        that found more of the rows already stored at commit time (another writer got there
        first) counts them as duplicates in what it returns."""
        ...

    def rollback(self) -> None: ...


class Sink(Protocol):
    display: str  # the target without secrets, for logs and reports
    backend: str  # "duckdb" or "postgres"

    @property
    def connection(self) -> Any:
        """The sink's ADBC DB-API connection: reads and deletes that must share the sink's
        transaction (e.g. `histetl resample` replacing a window) go through it."""

    def ledger_entry(self, sha256: str, table: str) -> LedgerEntry | None: ...

    def ledger(self) -> list[LedgerEntry]: ...

    def begin(
        self,
        target: TableTarget,
        sha256: str,
        force: bool,
        merge: bool = False,
        span: tuple[int | None, int | None] = (None, None),
    ) -> FileLoad | None:
        """Start a file's transaction; None when the ledger already has the file (checked
        again under the sink's lock, so concurrent loaders never load it twice)."""

    def init_tables(self, targets: list[TableTarget]) -> None:
        """Create these tables now (`histetl db init`)."""

    def reconnect(self) -> None: ...

    def close(self) -> None: ...


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


def local_path(uri: str, what: str, hint: str) -> str:
    """The path of a file target, scheme:///relative or scheme:////absolute (as `file_path`);
    a ConfigError naming `what` for any other form."""
    path = file_path(uri)
    if not path:
        raise ConfigError(f"bad {what} URI {uri!r}", where="--db", hint=hint)
    return path


def duckdb_path(uri: str) -> str:
    """duckdb:///relative/path.duckdb, duckdb:////absolute/path.duckdb, duckdb:///:memory:"""
    return local_path(uri, "DuckDB", "use duckdb:///relative.duckdb or duckdb:////absolute.duckdb")


FILE_SCHEMES = ("duckdb", "delta")  # targets that are files on this machine


def file_path(uri: str) -> str | None:
    """The path of a file target as written (duckdb:///relative.duckdb, duckdb:////absolute,
    delta:///lake); None for a server or object-store target."""
    scheme, _sep, rest = uri.partition(":")
    return rest[3:] if scheme.lower() in FILE_SCHEMES and rest.startswith("///") else None


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
        try:
            from histetl.targets.delta.sink import DeltaSink
        except ImportError:
            raise ConfigError(
                "Delta Lake targets need the deltalake package, which is not installed",
                where="--db",
                hint="install the lake extra: pip install 'histetl[lake]'",
            ) from None
        return DeltaSink(uri)
    if backend_of(uri) == "duckdb":
        from histetl.targets.duckdb.sink import DuckDBSink

        if timescale is not None:
            timescale.refuse(redact(uri), "is a DuckDB database (no hypertables or policies)")
        policy = retry or RetryPolicy()
        return DuckDBSink(uri, lock_timeout_s=policy.lock_timeout_s)
    from histetl.targets.postgres.sink import PostgresSink

    return PostgresSink(uri, retry=retry, timescale=timescale)
