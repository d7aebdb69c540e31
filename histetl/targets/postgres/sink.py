"""The production target: PostgreSQL, with TimescaleDB hypertables when the extension exists.

Load path, one transaction per file:

1. `pg_advisory_xact_lock` on the target table: loaders of one table take turns, so two cron
   runs with overlapping files never double-load or deadlock; then the ledger is checked again
   inside the transaction (a file another process just loaded is skipped).
2. Converting to the table's Arrow types runs in a background thread, in chunks of
   COPY_CHUNK_ROWS, so ADBC encodes and sends one chunk while the next is being validated and
   converted, and the server never waits for a whole batch.
3. Before the first COPY, one probe asks which time range the table already holds for the
   symbols (or instrument ids) of the file's first chunk, within the file's range: the
   occupied range. Chunks outside it are COPYed (ADBC ingest, binary) straight into the
   target table, whose primary key guards against duplicates, so a fresh load runs at COPY
   speed and a file for other symbols of a loaded day is not slowed down. For a chunk inside
   it, the table's keys in the chunk's time range are read back and only the missing rows
   are COPYed: a rerun or an overlapping download costs a key read per chunk, not a failed
   COPY and a replay. We hold the file's day locks, so no other histetl loader can add rows
   in between.
4. A unique violation (a row the probe did not foresee, e.g. an exact duplicate inside the
   file) rolls the transaction back and the file is replayed in merge mode: every chunk into
   a temporary staging table without indexes, then one `INSERT ... SELECT ... ON CONFLICT DO
   NOTHING` into the target, counting the duplicates exactly.
5. The ledger row is written and the transaction commits: a crash anywhere leaves either the
   whole file with its ledger row, or nothing.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from loguru import logger

from histetl.errors import (
    HistetlError,
    LoadError,
    TransientLoadError,
)
from histetl.secrets import redact
from histetl.sqltext import literal, quote
from histetl.targets.base import (
    LEDGER_SELECT,
    LEDGER_TABLE,
    LedgerEntry,
    RetryPolicy,
    TableTarget,
    TimescaleOptions,
    replace_in_transaction,
)
from histetl.targets.postgres.conn import (
    StallGuard,
    connect,
    connect_attempts,
    driver_error,
    parse_target,
    with_timeouts,
)
from histetl.targets.postgres.load import PostgresFileLoad
from histetl.targets.postgres.read import PostgresReader
from histetl.targets.postgres.schema import (
    check_identifier,
    create_table_sql,
    index_name,
    pg_columns,
)

if TYPE_CHECKING:
    import pyarrow as pa

_MIGRATIONS_TABLE = "histetl_migrations"


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
        self.retry = retry or RetryPolicy()
        self.target = parse_target(uri)  # ConfigError (exit 2) before any connection
        self._conninfo = with_timeouts(uri, self.retry)
        self.host = self.target.host
        self.display = redact(uri)
        self.timescale_options = timescale or TimescaleOptions()
        self._conn: Any = None
        self._guard: StallGuard | None = None
        self._created: set[str] = set()
        self.timescale: bool | None = None
        self._connect_retrying()

    # -- connection ----------------------------------------------------------------------------
    def error(self, what: str, exc: BaseException) -> HistetlError:
        stalled = self._guard is not None and self._guard.fired
        return driver_error(
            what,
            exc,
            self.target,
            (self._uri, self._conninfo),
            self.retry.timeout_s if stalled else None,
            loading=True,
        )

    def _connect_once(self) -> None:
        self.close()
        self._conn, self._guard = connect(self._uri, self.retry, loading=True)
        try:
            self.migrate()
        except BaseException:
            self.close()
            raise

    def _connect_retrying(self) -> None:
        """Connect (and migrate), retrying only transient failures with backoff."""
        connect_attempts(self.retry, self.target.label)(self._connect_once)

    def _live(self) -> Any:
        """The connection; after a failed reconnect, one more attempt (a TransientLoadError
        when the server is still away, never an AttributeError on a missing connection)."""
        if self._conn is None:
            self._connect_once()
        return self._conn

    @contextlib.contextmanager
    def guarded(self, wait_s: float | None = None) -> Iterator[StallGuard | None]:
        """Run a blocking call under the stall watchdog: --db-timeout of silence ends it, or
        for a lock wait (`wait_s`) silence while the server no longer answers at all."""
        guard = self._guard
        if guard is None:
            yield None
            return
        with guard.watch(self.retry.timeout_s, wait_s):
            yield guard

    def _lock_wait_s(self) -> float:
        """A lock statement's longest wait while the server answers: its lock_timeout, plus
        --db-timeout for the answer (no limit with --lock-timeout 0)."""
        lock = self.retry.lock_timeout_s
        return math.inf if lock <= 0 else lock + self.retry.timeout_s

    def execute(
        self, sql: str, params: tuple[Any, ...] = (), wait_s: float | None = None
    ) -> list[tuple[Any, ...]]:
        conn = self._live()
        with conn.cursor() as cur, self.guarded(wait_s):
            try:
                cur.execute(sql, params or None)
                return list(cur.fetchall()) if cur.description else []
            except Exception as exc:
                raise self.error("query failed", exc) from None

    def commit(self) -> None:
        with self.guarded():
            try:
                self._live().commit()
            except LoadError:
                raise
            except Exception as exc:
                raise self.error("commit failed", exc) from None

    def rollback(self) -> None:
        """End the transaction; a lost connection has rolled back on the server already."""
        if self._conn is None:
            return
        with self.guarded():
            try:
                self._conn.rollback()
            except Exception as exc:
                logger.debug("rollback on {}: {}", self.host, self.error("rollback", exc).what)

    @property
    def connection(self) -> Any:
        """The live connection, for this folder's file load (no one outside it)."""
        return self._live()

    def reader(self) -> PostgresReader:
        return PostgresReader(self._live(), self.display, owned=False)

    def replace_window(
        self, target: TableTarget, window: tuple[int, int], rows: pa.Table, entry: LedgerEntry
    ) -> tuple[int, LedgerEntry | None]:
        return replace_in_transaction(self, self.reader, target, window, rows, entry)

    def reconnect(self) -> None:
        """Drop the connection; the next call connects again (one attempt: the caller's retry
        loop backs off between attempts, and that attempt's error is the one reported)."""
        self.close()

    def close(self) -> None:
        if self._guard is not None:
            self._guard.close()
            self._guard = None
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception as exc:  # a dead connection may fail to close; nothing to keep
                logger.debug("closing PostgreSQL connection: {}", self.error("close", exc).what)
            self._conn = None

    # -- schema --------------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        """Apply the migrations in sql/ that this database has not seen; returns their names."""
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('histetl:migrations', 0))",
            wait_s=self._lock_wait_s(),
        )
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
                try:
                    self.execute(statement)
                except LoadError as exc:
                    raise _migration_error(exc, name, statement, self.target.label) from None
            self.execute(
                f"INSERT INTO {_MIGRATIONS_TABLE} (version, name) VALUES ($1, $2)", (version, name)
            )
            applied.append(name)
        self.commit()
        self.timescale = self._enable_timescale()
        self.commit()  # never left idle in a transaction (idle_in_transaction_session_timeout)
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
                    self.commit()
                    installed = [(1,)]
                except TransientLoadError:
                    raise
                except LoadError as exc:
                    self.rollback()
                    logger.warning("cannot create the timescaledb extension: {}", exc.what)
        if not installed:
            if self.target.label in _WARNED_NO_TIMESCALE:  # once per process and target
                return False
            _WARNED_NO_TIMESCALE.add(self.target.label)
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
        check_identifier(target.name)
        if self._table_ready(target):
            self._add_new_columns(target)
            self.commit()
            self._created.add(target.name)
            return
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            (f"histetl:ddl:{target.name}",),
            wait_s=self._lock_wait_s(),
        )
        for statement in create_table_sql(target):
            self.execute(statement)
        if self.timescale and not self.execute(
            "SELECT 1 FROM timescaledb_information.hypertables "
            "WHERE hypertable_schema = current_schema() AND hypertable_name = $1",
            (target.name,),
        ):
            self._make_hypertable(target)
        self.commit()
        self._created.add(target.name)

    def _add_new_columns(self, target: TableTarget) -> None:
        """A table made by an older histetl gets the nullable columns added since (ingest maps
        columns by name, so their place in the table does not matter)."""
        have = {
            row[0]
            for row in self.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = $1",
                (target.name,),
            )
        }
        new = [c for c in pg_columns(target.schema, target.key) if c.name not in have]
        if not new:
            return
        required = [c.name for c in new if c.not_null]
        if required:
            raise LoadError(
                f"table {target.name} has no column {', '.join(required)}, which the load needs",
                where=self.target.label,
                hint="load into another table (mapping `table:`), or rename the old table",
            )
        self.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            (f"histetl:ddl:{target.name}",),
            wait_s=self._lock_wait_s(),
        )
        for column in new:
            self.execute(
                f"ALTER TABLE {quote(target.name)} ADD COLUMN IF NOT EXISTS "
                f"{quote(column.name)} {column.sql_type}"
            )
        logger.info("table {}: added columns {}", target.name, ", ".join(c.name for c in new))

    def _table_ready(self, target: TableTarget) -> bool:
        """The table and its indexes exist (and are a hypertable, with TimescaleDB): then no
        DDL runs, because even CREATE INDEX IF NOT EXISTS takes a SHARE lock that would
        queue behind other loaders' open COPYs."""
        names = [quote(target.name)]
        if any(f.name == "symbol" for f in target.schema):
            names.append(quote(index_name(target.name, "symbol_time")))
        for name in names:
            if self.execute("SELECT to_regclass($1) IS NOT NULL", (name,))[0][0] is not True:
                return False
        return not self.timescale or bool(
            self.execute(
                "SELECT 1 FROM timescaledb_information.hypertables "
                "WHERE hypertable_schema = current_schema() AND hypertable_name = $1",
                (target.name,),
            )
        )

    def init_tables(self, targets: list[TableTarget]) -> None:
        """`histetl db init`: every canonical table, ready before the first load, with the
        configured compression and retention policies on TimescaleDB (refused, before any
        table is created, when the server has no TimescaleDB)."""
        if not self.timescale:
            self.timescale_options.refuse(self.target.label, "has no timescaledb extension")
        for target in targets:
            self.ensure_table(target)
            if self.timescale:
                self._apply_policies(target)
                self.commit()

    def _make_hypertable(self, target: TableTarget) -> None:
        options = self.timescale_options
        table = literal(quote(target.name))
        # SELECT * FROM: the bare function call returns a record type ADBC cannot read
        self.execute(
            f"SELECT * FROM create_hypertable({table}, {literal(target.time_column)}, "
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
                f"timescaledb.compress_orderby = {literal(quote(target.time_column))})"
            )
            self.execute(
                f"SELECT * FROM add_compression_policy({literal(table)}, "
                f"INTERVAL '{options.compress_after}', if_not_exists => TRUE)"
            )
        if options.retain_for:
            self.execute(
                f"SELECT * FROM add_retention_policy({literal(table)}, "
                f"INTERVAL '{options.retain_for}', if_not_exists => TRUE)"
            )

    # -- ledger --------------------------------------------------------------------------------
    def ledger_entry(self, sha256: str, table: str) -> LedgerEntry | None:
        rows = self.execute(
            LEDGER_SELECT + " WHERE sha256 = $1 AND target_table = $2",
            (sha256, table),
        )
        self.commit()
        return LedgerEntry(*rows[0]) if rows else None

    def ledger(self) -> list[LedgerEntry]:
        rows = self.execute(LEDGER_SELECT + " ORDER BY loaded_at, path")
        self.commit()
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
        wait = self._lock_wait_s()
        lock = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
        if days is None:
            self.execute(lock, (table_key,), wait_s=wait)
        else:
            self.execute(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))",
                (table_key,),
                wait_s=wait,
            )
            for day in days:
                self.execute(lock, (f"{table_key}:{day}",), wait_s=wait)
        if not force:
            rows = self.execute(
                f"SELECT 1 FROM {LEDGER_TABLE} WHERE sha256 = $1 AND target_table = $2",
                (sha256, target.name),
            )
            if rows:
                self.rollback()
                return None
        return PostgresFileLoad(self, target, merge, span)


_WARNED_NO_TIMESCALE: set[str] = set()


MAX_DAY_LOCKS = 64
_NS_PER_DAY = 86_400 * 10**9


def _days(span: tuple[int | None, int | None]) -> range | None:
    start, end = span
    if start is None or end is None or end <= start:
        return None
    days = range(start // _NS_PER_DAY, (end - 1) // _NS_PER_DAY + 1)
    return days if len(days) <= MAX_DAY_LOCKS else None


def _migration_error(exc: LoadError, name: str, statement: str, where: str) -> LoadError:
    """A migration statement the server refused, said as such: most often a table, view or
    index of a histetl name that something else made. Transient and permission errors, and
    a stop request, keep their own message and hint."""
    if type(exc) is not LoadError:
        return exc
    prefix = r"^query failed: (?:Failed to execute query '.*?': )?(?:ERROR:\s+)?"
    reason = re.sub(prefix, "", exc.what)
    return LoadError(
        f"cannot set up histetl's tables (migration {name}, at "
        f"`{statement.strip().splitlines()[0]}`): {reason}",
        where=where,
        hint="a table, view or index of that name that histetl did not make? rename it, or "
        "give histetl a schema of its own (CREATE SCHEMA histetl, and in the URI "
        "?options=-csearch_path%3Dhistetl)",
    )


def _statements(sql: str) -> list[str]:
    """Split a migration file on semicolons at line ends (no procedural code in them)."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    parts = "\n".join(lines).split(";\n")
    return [part.strip().rstrip(";").strip() for part in parts if part.strip().rstrip(";")]
