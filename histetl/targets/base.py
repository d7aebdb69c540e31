"""What every target shares: table and ledger records, the sink and reader protocols, retry
and TimescaleDB settings, and the ledger's SQL. Light: nothing here imports a driver."""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from histetl.config import DB_RETRIES, DB_RETRY_MAX_WAIT_S, DB_TIMEOUT_S, LOCK_TIMEOUT_S
from histetl.errors import ConfigError, LoadError, first_line
from histetl.interrupt import CANCEL, Interrupted

if TYPE_CHECKING:
    import pyarrow as pa

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

    max_attempts: int = DB_RETRIES
    max_wait_s: float = DB_RETRY_MAX_WAIT_S
    connect_timeout_s: float = 10.0
    timeout_s: float = DB_TIMEOUT_S
    lock_timeout_s: float = LOCK_TIMEOUT_S


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

    def reader(self) -> Reader:
        """A reader of what the sink holds (a SQL sink's over its own connection):
        `histetl resample` reads its source bars through it."""

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

    def replace_window(
        self, target: TableTarget, window: tuple[int, int], rows: pa.Table, entry: LedgerEntry
    ) -> tuple[int, LedgerEntry | None]:
        """Replace the rows of `target` whose time column lies in [start, end) of `window` by
        `rows` (all inside it), with the ledger record `entry`, in one transaction (a Delta
        lake: one commit, retried after another writer's). Returns how many rows were
        replaced and the record as stored, or (0, None) with nothing committed when the
        window had no rows and gets none."""

    def init_tables(self, targets: list[TableTarget]) -> None:
        """Create these tables now (`histetl db init`)."""

    def reconnect(self) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class DbColumn:
    """A canonical column and the SQL that reads it."""

    name: str
    type: pa.DataType
    sql: str


class Reader(Protocol):
    """A target's read side, in its SQL dialect: what `histetl.read.database.Database` (query,
    verify, resample, status) needs and nothing more. No raw connection leaves it."""

    display: str

    def stream(self, sql: str) -> pa.RecordBatchReader:
        """The result of `sql` as a stream (LoadError naming the target on failure)."""

    def tables(self) -> set[str]:
        """The tables a reader can see (loaded tables and the ledger)."""

    def column(
        self, field: pa.Field, schema: pa.Schema, types: dict[str, pa.DataType]
    ) -> DbColumn | None:
        """The canonical column a stored column reads as (`types`: the canonical types by
        name); None for a stored half of a canonical column (PostgreSQL's X_ns)."""

    def time_ns(self, column: str) -> str:
        """SQL for a timestamp column as int64 nanoseconds since the epoch."""

    def time_range(self, column: str, start_ns: int | None, end_ns: int | None) -> list[str]:
        """Conditions for start <= column < end, written so the target's indexes work."""

    def time_order(self, column: str) -> str:
        """ORDER BY terms for a timestamp column, exact to the nanosecond."""

    def close(self) -> None:
        """End the read transaction and close the connection the reader owns."""


def stopped_by_signal(exc: BaseException) -> Interrupted | None:
    """`Interrupted` when a driver error is a statement cancelled on request. ADBC takes SIGINT
    itself during a blocking call (a COPY, a query) and answers it by cancelling the statement,
    so histetl's own handler never sees the signal: that error is the Ctrl-C (or an operator's
    pg_cancel_backend), and the run stops as after any other stop request."""
    text = str(exc)
    if not (
        text.startswith("CANCELLED:")  # ADBC's status (DuckDB: "INTERRUPT Error: Interrupted!")
        or "canceling statement due to user request" in text  # PostgreSQL's 57014
    ):
        return None
    return CANCEL.stopped(signal.SIGINT)


class SqlDelete(Protocol):
    """What a SQL sink's reader adds for `replace_in_transaction`: DELETE in its dialect."""

    def time_range(self, column: str, start_ns: int | None, end_ns: int | None) -> list[str]: ...
    def delete(self, table: str, where: list[str]) -> int: ...


def replace_in_transaction(
    sink: Sink,
    reader: Callable[[], SqlDelete],
    target: TableTarget,
    window: tuple[int, int],
    rows: pa.Table,
    entry: LedgerEntry,
) -> tuple[int, LedgerEntry | None]:
    """`Sink.replace_window` for a SQL sink: in one file transaction (`begin`), delete the
    window's rows (through `reader()`, on the transaction's connection), then merge `rows` and
    commit with `entry`; replayed in merge mode when the sink asks for it."""
    merge = False
    while True:
        load = sink.begin(target, entry.sha256, force=True, merge=merge)
        assert load is not None  # force: never skipped
        try:
            sql = reader()  # after `begin`: the connection of the transaction begun
            replaced = sql.delete(target.name, sql.time_range(target.time_column, *window))
            if not rows.num_rows and not replaced:
                load.rollback()
                return 0, None
            inserted = load.write_stream(iter([rows])) if rows.num_rows else 0
            stored = load.commit(
                replace(entry, loaded=inserted, duplicates=entry.records - inserted)
            )
        except MergeRequired:
            merge = True  # the sink rolled back; do the window again in merge mode
            continue
        except BaseException:
            load.rollback()
            raise
        return replaced, stored


class SqlReader:
    """The generic half of a target's reader, over one DB-API connection (ADBC's, or DuckDB's
    own module): statements stream their results as Arrow; a target's subclass adds its
    dialect (the Reader methods that differ)."""

    def __init__(self, conn: Any, display: str, owned: bool = True) -> None:
        self._conn = conn
        self.display = display
        self._owned = owned  # False: the sink's connection, which the sink closes

    def stream(self, sql: str) -> pa.RecordBatchReader:
        import pyarrow as pa

        cur = self._conn.cursor()
        try:
            cur.execute(sql)
            reader = cur.fetch_record_batch()
        except Exception as exc:
            cur.close()
            raise self._error(exc) from None

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                yield from reader
            except Exception as exc:  # a statement that fails while it streams
                raise self._error(exc) from None
            finally:
                cur.close()

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def tables(self) -> set[str]:
        result = self.stream(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).read_all()
        return {str(name) for name in result.column(0).to_pylist()}

    def ledger(self) -> list[LedgerEntry]:
        """The load ledger, oldest first, read as a query reads it (nothing is created: a
        read-only role may ask); empty when nothing was ever loaded here."""
        if LEDGER_TABLE not in self.tables():
            return []
        table = self.stream(LEDGER_SELECT + " ORDER BY loaded_at, path").read_all()
        rows = zip(*(column.to_pylist() for column in table.columns), strict=True)
        return [LedgerEntry(*row) for row in rows]

    def count(self, sql: str) -> int:
        """Run a statement whose one result is a count (a DELETE's) in the open transaction."""
        cur = self._conn.cursor()
        try:
            cur.execute(sql)
            row = cur.fetchone()
        except Exception as exc:
            raise self._error(exc) from None
        finally:
            cur.close()
        return int(row[0]) if row else 0

    def close(self) -> None:
        if self._owned and self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # no transaction open, or the connection is gone
                conn.rollback()  # end the read transaction; nothing was written
            conn.close()

    def _error(self, exc: BaseException) -> BaseException:
        if stopped_by_signal(exc) is not None:  # the driver took a Ctrl-C: it is one
            return KeyboardInterrupt()
        return LoadError(f"query failed: {first_line(exc)}", where=self.display)


def local_path(uri: str, what: str, hint: str) -> str:
    """The path of a file target, scheme:///relative or scheme:////absolute (as `file_path`);
    a ConfigError naming `what` for any other form."""
    path = file_path(uri)
    if not path:
        raise ConfigError(f"bad {what} URI {uri!r}", where="--db", hint=hint)
    relative = Path(path)
    if (
        not relative.is_absolute()
        and not path.startswith("./")
        and len(relative.parts) > 1
        and not Path(relative.parts[0]).exists()
        and (Path("/") / relative).parent.is_dir()
    ):
        # duckdb:///tmp/x.duckdb names tmp/x.duckdb here; a folder tree made in the current
        # folder that mirrors an existing absolute one is almost always a missing slash
        scheme = uri.partition(":")[0]
        raise ConfigError(
            f"{uri} names {path} in the current folder, which has no {relative.parts[0]}/ "
            f"(three slashes: a relative path)",
            where="--db",
            hint=f"for /{path} write {scheme}:////{path}; to create it here write "
            f"{scheme}:///./{path}",
        )
    return path


FILE_SCHEMES = ("duckdb", "delta")  # targets that are files on this machine


def file_path(uri: str) -> str | None:
    """The path of a file target as written (duckdb:///relative.duckdb, duckdb:////absolute,
    delta:///lake); None for a server or object-store target."""
    scheme, _sep, rest = uri.partition(":")
    return rest[3:] if scheme.lower() in FILE_SCHEMES and rest.startswith("///") else None
