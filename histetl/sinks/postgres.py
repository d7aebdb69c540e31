"""The production target: PostgreSQL, with TimescaleDB hypertables when the extension exists.

Load path, one transaction per file:

1. `pg_advisory_xact_lock` on the target table: loaders of one table take turns, so two cron
   runs with overlapping files never double-load or deadlock; then the ledger is checked again
   inside the transaction (a file another process just loaded is skipped).
2. Optimistic: each batch is COPYed (ADBC ingest, binary) straight into the target table, whose
   primary key guards against duplicates. A fresh load therefore runs at COPY speed.
3. On a unique violation (a rerun, an overlapping file, an exact duplicate inside the file) the
   transaction rolls back and the file is replayed in merge mode: batches go to a temporary
   staging table and `INSERT ... SELECT ... ON CONFLICT DO NOTHING` into the target, counting
   the duplicates exactly.
4. The ledger row is written and the transaction commits: a crash anywhere leaves either the
   whole file with its ledger row, or nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import adbc_driver_postgresql.dbapi as pg_dbapi
import pyarrow as pa
from loguru import logger
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from histetl.errors import LoadError, TransientLoadError
from histetl.sinks import (
    LEDGER_COLUMNS,
    LEDGER_SELECT,
    LEDGER_TABLE,
    LedgerEntry,
    MergeRequired,
    RetryPolicy,
    TableTarget,
    TimescaleOptions,
    ledger_params,
    ledger_upsert_sql,
    redact,
)
from histetl.sinks.pgschema import create_table_sql, pg_arrow_schema, quote, to_pg_arrow

_MIGRATIONS_TABLE = "histetl_migrations"
_UNIQUE_VIOLATION = "23505"


def _is_connection_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(
        s in text
        for s in (
            "connection",
            "could not connect",
            "server closed",
            "terminating",
            "no connection",
            "broken pipe",
            "timeout",
        )
    )


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped in sql/, in order."""
    found = []
    for entry in resources.files("histetl.sql").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), name, entry.read_text("utf-8")))
    return sorted(found)


class PostgresSink:
    def __init__(
        self, uri: str, retry: RetryPolicy | None = None, timescale: TimescaleOptions | None = None
    ) -> None:
        self._uri = uri
        parts = urlsplit(uri)
        self._password = parts.password
        self.host = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
        self.display = redact(uri)
        self.backend = "postgres"
        self.retry = retry or RetryPolicy()
        self.timescale_options = timescale or TimescaleOptions()
        self._conn: Any = None
        self._created: set[str] = set()
        self.timescale: bool | None = None
        self.connect()
        self.migrate()

    # -- connection ----------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text.replace(self._uri, self.display)

    def error(self, what: str, exc: BaseException, transient: bool = False) -> LoadError:
        message = self._scrub(
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        cls = TransientLoadError if transient else LoadError
        return cls(
            f"{what}: {message}",
            where=f"PostgreSQL at {self.host}",
            hint="check that the server is up and the URI (user, database) is right"
            if transient
            else None,
        )

    def connect(self) -> None:
        self.close()

        def attempt() -> Any:
            try:
                return pg_dbapi.connect(self._uri)
            except Exception as exc:  # the driver's error classes are not importable stably
                raise self.error("cannot connect", exc, transient=True) from None

        retrying = Retrying(
            retry=retry_if_exception_type(TransientLoadError),
            stop=stop_after_attempt(self.retry.max_attempts),
            wait=wait_exponential(multiplier=0.2, max=self.retry.max_wait_s),
            before_sleep=lambda state: logger.warning(
                "PostgreSQL at {} unreachable (attempt {}), retrying",
                self.host,
                state.attempt_number,
            ),
            reraise=True,
        )
        self._conn = retrying(attempt)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            try:
                cur.execute(sql, params or None)
            except Exception as exc:
                raise self.error("query failed", exc, _is_connection_error(exc)) from None
            return list(cur.fetchall()) if cur.description else []

    @property
    def connection(self) -> Any:
        return self._conn

    def reconnect(self) -> None:
        self.connect()

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception as exc:  # a dead connection may fail to close; nothing to keep
                logger.debug("closing PostgreSQL connection: {}", exc)
            self._conn = None

    # -- schema --------------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply the migrations in sql/ that this database has not seen; returns their names."""
        self.execute("SELECT pg_advisory_xact_lock(hashtextextended('histetl:migrations', 0))")
        self.execute(
            f"CREATE TABLE IF NOT EXISTS {_MIGRATIONS_TABLE} (version integer PRIMARY "
            "KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in self.execute(f"SELECT version FROM {_MIGRATIONS_TABLE}")}
        applied = []
        for version, name, sql in migrations():
            if version in done:
                continue
            for statement in _statements(sql):
                self.execute(statement)
            self.execute(
                f"INSERT INTO {_MIGRATIONS_TABLE} (version, name) VALUES ($1, $2)", (version, name)
            )
            applied.append(name)
        self._conn.commit()
        self.timescale = self._enable_timescale()
        return applied

    def _enable_timescale(self) -> bool:
        installed = self.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if not installed:
            available = self.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
            )
            if available:
                try:
                    self.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                    self._conn.commit()
                    installed = [(1,)]
                except LoadError as exc:
                    self._conn.rollback()
                    logger.warning("cannot create the timescaledb extension: {}", exc.what)
        if not installed:
            logger.warning(
                "TimescaleDB is not available on {}: tables are plain PostgreSQL "
                "tables (loads, dedup and queries work; no hypertables, compression "
                "or retention policies)",
                self.host,
            )
            return False
        return True

    def ensure_table(self, target: TableTarget) -> None:
        """Create the table (and its hypertable, with TimescaleDB) if it does not exist."""
        if target.name in self._created:
            return
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", (f"histetl:ddl:{target.name}",)
        )
        for statement in create_table_sql(target):
            self.execute(statement)
        if self.timescale and not self.execute(
            "SELECT 1 FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = $1",
            (target.name,),
        ):
            self._make_hypertable(target)
        self._conn.commit()
        self._created.add(target.name)

    def init_tables(self, targets: list[TableTarget]) -> None:
        """`histetl db init`: every canonical table, ready before the first load, with the
        configured compression and retention policies on TimescaleDB."""
        for target in targets:
            self.ensure_table(target)
            if self.timescale:
                self._apply_policies(target)
                self._conn.commit()

    def _make_hypertable(self, target: TableTarget) -> None:
        options = self.timescale_options
        table = quote(target.name)
        # SELECT * FROM: the bare function call returns a record type ADBC cannot read
        self.execute(
            f"SELECT * FROM create_hypertable('{table}', '{target.time_column}', "
            f"chunk_time_interval => INTERVAL '{options.chunk_interval}', "
            "if_not_exists => TRUE, migrate_data => TRUE)"
        )
        self._apply_policies(target)

    def _apply_policies(self, target: TableTarget) -> None:
        """Compression and retention policies (idempotent: if_not_exists)."""
        options = self.timescale_options
        table = quote(target.name)
        if options.compress_after:
            self.execute(
                f"ALTER TABLE {table} SET (timescaledb.compress, "
                "timescaledb.compress_segmentby = 'instrument_id', "
                f"timescaledb.compress_orderby = '{target.time_column}')"
            )
            self.execute(
                f"SELECT * FROM add_compression_policy('{table}', "
                f"INTERVAL '{options.compress_after}', if_not_exists => TRUE)"
            )
        if options.retain_for:
            self.execute(
                f"SELECT * FROM add_retention_policy('{table}', "
                f"INTERVAL '{options.retain_for}', if_not_exists => TRUE)"
            )

    # -- ledger --------------------------------------------------------------------------------
    def ledger_entry(self, sha256: str, table: str) -> LedgerEntry | None:
        rows = self.execute(
            LEDGER_SELECT + " WHERE sha256 = $1 AND target_table = $2",
            (sha256, table),
        )
        self._conn.commit()
        return LedgerEntry(*rows[0]) if rows else None

    def ledger(self) -> list[LedgerEntry]:
        rows = self.execute(LEDGER_SELECT + " ORDER BY loaded_at, path")
        self._conn.commit()
        return [LedgerEntry(*row) for row in rows]

    # -- loading -------------------------------------------------------------------------------
    def begin(
        self,
        target: TableTarget,
        sha256: str,
        force: bool,
        merge: bool = False,
        span: tuple[int | None, int | None] = (None, None),
    ) -> PostgresFileLoad | None:
        """Start a file's transaction; None when the ledger (checked under the locks) already
        has this file.

        Locks: a file's rows lie inside its metadata's [start, end) (rows outside are
        quarantined), so loaders take transaction advisory locks on the UTC days the file
        covers, in ascending order, under a shared lock on the table. Files of different
        days load in parallel; files sharing a day take turns, so overlapping loads never
        double-load or deadlock. A file without a usable range, or spanning more than
        MAX_DAY_LOCKS days, takes the table lock exclusively."""
        self.ensure_table(target)
        days = _days(span)
        table_key = f"histetl:load:{target.name}"
        if days is None:
            self.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", (table_key,))
        else:
            self.execute(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))", (table_key,)
            )
            for day in days:
                self.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", (f"{table_key}:{day}",)
                )
        if not force:
            rows = self.execute(
                f"SELECT 1 FROM {LEDGER_TABLE} WHERE sha256 = $1 AND target_table = $2",
                (sha256, target.name),
            )
            if rows:
                self._conn.rollback()
                return None
        return PostgresFileLoad(self, target, merge)


MAX_DAY_LOCKS = 64
_NS_PER_DAY = 86_400 * 10**9


def _days(span: tuple[int | None, int | None]) -> range | None:
    start, end = span
    if start is None or end is None or end <= start:
        return None
    days = range(start // _NS_PER_DAY, (end - 1) // _NS_PER_DAY + 1)
    return days if len(days) <= MAX_DAY_LOCKS else None


class PostgresFileLoad:
    def __init__(self, sink: PostgresSink, target: TableTarget, merge: bool) -> None:
        self._sink = sink
        self._target = target
        self.merge = merge
        self._schema = pg_arrow_schema(target)
        self._stage = f"histetl_stage_{target.name}"
        columns = ", ".join(quote(f.name) for f in self._schema)
        self._merge_sql = (
            f"INSERT INTO {quote(target.name)} ({columns}) SELECT {columns} "
            f"FROM {quote(self._stage)} ON CONFLICT DO NOTHING"
        )

    def write_stream(self, batches: Iterator[pa.Table]) -> int:
        """One COPY for the whole file (ADBC ingest of a RecordBatchReader), so encoding the
        next batch overlaps the server inserting this one. Optimistic: straight into the
        target; in merge mode into a staging table, then one INSERT ... ON CONFLICT."""
        failure: list[BaseException] = []

        def converted() -> Iterator[pa.RecordBatch]:
            try:
                for batch in batches:
                    yield from to_pg_arrow(batch, self._target).to_batches()
            except BaseException as exc:  # ADBC would only see a message: keep the error
                failure.append(exc)
                raise

        reader = pa.RecordBatchReader.from_batches(self._schema, converted())
        conn = self._sink._conn
        with conn.cursor() as cur:
            try:
                if not self.merge:
                    return int(cur.adbc_ingest(self._target.name, reader, mode="append"))
                cur.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {quote(self._stage)} "
                    f"(LIKE {quote(self._target.name)}) ON COMMIT DROP"
                )
                cur.adbc_ingest(self._stage, reader, mode="append", temporary=True)
                cur.execute(self._merge_sql)
                return int(cur.rowcount)
            except Exception as exc:
                if failure:
                    raise failure[0] from None
                if not self.merge and getattr(exc, "sqlstate", None) == _UNIQUE_VIOLATION:
                    conn.rollback()
                    raise MergeRequired from None
                what = "merge failed" if self.merge else "COPY failed"
                raise self._sink.error(what, exc, _is_connection_error(exc)) from None

    def commit(self, entry: LedgerEntry) -> None:
        placeholders = [f"${i + 1}" for i in range(len(LEDGER_COLUMNS))]
        self._sink.execute(ledger_upsert_sql(placeholders), ledger_params(entry))
        try:
            self._sink._conn.commit()
        except Exception as exc:
            raise self._sink.error("commit failed", exc, _is_connection_error(exc)) from None

    def rollback(self) -> None:
        try:
            self._sink._conn.rollback()
        except Exception as exc:  # the connection may be gone; the server rolls back for us
            logger.debug("rollback on {}: {}", self._sink.host, exc)


def _statements(sql: str) -> list[str]:
    """Split a migration file on semicolons at line ends (no procedural code in them)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    parts = "\n".join(lines).split(";\n")
    return [part.strip().rstrip(";").strip() for part in parts if part.strip().rstrip(";")]
