"""The embedded default target: a DuckDB file, through DuckDB's ADBC driver.

Each file loads in one transaction: batches are ingested into a temporary staging table and
merged, whole row groups at a time, by an insert of the staged rows whose key
(index timestamp, instrument_id, record_hash) is not yet in the table, then the ledger row is
written and the transaction commits. A crash at any point leaves the file either fully loaded
with its ledger row or not at all. DuckDB allows one writing process per file: a second histetl
waits for the lock (up to `lock_timeout_s`, saying what it waits for) and then exits with a
clear message.

Memory stays flat in the file size: tables have no primary-key index (DuckDB keeps an ART
index, and a transaction's own index entries, wholly in memory), the key is checked by an
anti-join restricted to the merged rows' time range (row groups outside it are skipped by their
min/max), each merge inserts whole row groups, which DuckDB writes to the database file before
the commit (a partial one it would hold in memory until then), and DuckDB's memory is capped
at `_MEMORY_LIMIT` while a file loads. A table made by an older histetl keeps its primary key:
it loads as before, without the cap.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import adbc_driver_duckdb.dbapi as duckdb_dbapi
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from loguru import logger
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
)

from histetl.errors import FULL_DISK_HINT, ConfigError, HistetlError, LoadError, full_disk
from histetl.outputs import make_dir
from histetl.sqltext import quote
from histetl.targets.base import (
    LEDGER_COLUMNS,
    LEDGER_SELECT,
    LEDGER_TABLE,
    LedgerEntry,
    TableTarget,
    ledger_params,
    ledger_upsert_sql,
    replace_in_transaction,
    stopped_by_signal,
)
from histetl.targets.duckdb import duckdb_path, is_locked, message, open_error
from histetl.targets.duckdb.read import DuckDBReader

_STAGE = "histetl_stage"
# DuckDB's memory (buffer pool, uncommitted rows, joins) while a file loads into a table
# without an index; what exceeds it spills to `<database>.tmp/`. Peak RSS of a whole replay:
# 451 MB for 2.5M trades, 464 MB for 10M; a 256 MB cap was no faster.
_MEMORY_LIMIT = "128MB"
# About this many staged Arrow bytes per merge, rounded down to whole row groups (2 for trades),
# which DuckDB writes straight to the database file; a partial one it would hold to the commit.
_MERGE_BYTES = 32 << 20
_ROW_GROUP = 122_880  # DuckDB's rows per row group
_LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    sha256 VARCHAR NOT NULL,
    target_table VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    dataset VARCHAR NOT NULL,
    schema VARCHAR NOT NULL,
    records BIGINT NOT NULL,
    loaded BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    quarantined BIGINT NOT NULL,
    run_id VARCHAR NOT NULL,
    loaded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (sha256, target_table)
)"""


def duckdb_type(type_: pa.DataType) -> str:
    if pa.types.is_timestamp(type_):
        return "TIMESTAMPTZ_NS" if type_.tz else "TIMESTAMP_NS"
    if pa.types.is_decimal(type_):
        return f"DECIMAL({type_.precision},{type_.scale})"
    simple = {
        pa.int8(): "TINYINT", pa.int16(): "SMALLINT", pa.int32(): "INTEGER",
        pa.int64(): "BIGINT", pa.uint8(): "UTINYINT", pa.uint16(): "USMALLINT",
        pa.uint32(): "UINTEGER", pa.uint64(): "UBIGINT", pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN", pa.string(): "VARCHAR",
        pa.large_string(): "VARCHAR",
    }  # fmt: skip
    if type_ in simple:
        return simple[type_]
    raise ConfigError(
        f"no DuckDB column type for Arrow type {type_}",
        hint="cast the column to a supported type in the mapping",
    )


def create_table_sql(target: TableTarget) -> str:
    """No PRIMARY KEY: the load's anti-join keeps the key unique (see the module docstring)."""
    columns = [
        f"{quote(f.name)} {duckdb_type(f.type)}" + ("" if f.nullable else " NOT NULL")
        for f in target.schema
    ]
    return (
        f"CREATE TABLE IF NOT EXISTS {quote(target.name)} (\n    " + ",\n    ".join(columns) + "\n)"
    )


def _has_index(cur: Any, table: str) -> bool:
    """Whether `table` has an ART index (a primary key from an older histetl, or one a user
    made), which DuckDB cannot spill: its load must not run under the memory cap."""
    cur.execute(
        "SELECT (SELECT count(*) FROM duckdb_indexes() WHERE schema_name = current_schema() "
        "AND table_name = $1) + (SELECT count(*) FROM duckdb_constraints() "
        "WHERE schema_name = current_schema() AND table_name = $1 "
        "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE'))",
        (table,),
    )
    row = cur.fetchone()
    return bool(row and row[0])


def _add_new_columns(cur: Any, target: TableTarget) -> None:
    """A table made by an older histetl gets the nullable columns added since (ingest maps
    columns by name)."""
    cur.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ?",
        (target.name,),
    )
    have = {row[0] for row in cur.fetchall()}
    new = [f for f in target.schema if f.name not in have]
    required = [f.name for f in new if not f.nullable]
    if required:
        raise LoadError(
            f"table {target.name} has no column {', '.join(required)}, which the load needs",
            hint="load into another table (mapping `table:`), or rename the old table",
        )
    for field in new:
        cur.execute(
            f"ALTER TABLE {quote(target.name)} ADD COLUMN {quote(field.name)} "
            f"{duckdb_type(field.type)}"
        )
    if new:
        logger.info("table {}: added columns {}", target.name, ", ".join(f.name for f in new))


class _Locked(Exception):
    """The database file is locked by another process (a retry may succeed)."""


class DuckDBSink:
    def __init__(self, uri: str, lock_timeout_s: float = 300.0) -> None:
        self.path = duckdb_path(uri)
        self.display = f"duckdb:///{self.path}"
        if self.path != ":memory:":
            _prepare_dir(Path(self.path))
        self._lock_timeout_s = lock_timeout_s
        self._conn = self._connect(lock_timeout_s)
        self._created: dict[str, bool] = {}  # table -> has an index
        try:
            with self._conn.cursor() as cur:
                cur.execute(_LEDGER_DDL)
            self._conn.commit()
        except Exception as exc:  # e.g. a read-only file
            self._conn.close()
            raise LoadError(
                f"cannot write to the DuckDB database: {message(exc)}",
                where=self.path,
                hint="check that the file is writable and is a DuckDB database",
            ) from None

    def _connect(self, timeout_s: float) -> Any:
        """Open the file; while another process holds its lock, say so once and wait (up
        to `timeout_s`, 0 = forever), then fail with one clear line."""
        told: list[bool] = []

        def attempt() -> Any:
            try:
                return duckdb_dbapi.connect(self.path)
            except Exception as exc:  # the ADBC driver raises its own error classes
                text = str(exc)
                if not is_locked(exc):
                    raise open_error(exc, self.path) from None
                if not told:
                    told.append(True)
                    limit = f"up to {timeout_s:g} s" if timeout_s > 0 else "until it is free"
                    logger.warning(
                        "waiting for {}: another process{} holds its lock (another histetl "
                        "loading into it?); waiting {} (--lock-timeout)",
                        self.path,
                        _holder(text),
                        limit,
                    )
                raise _Locked(text) from None

        retrying = Retrying(
            retry=retry_if_exception_type(_Locked),
            stop=stop_after_delay(timeout_s) if timeout_s > 0 else stop_never,
            wait=wait_exponential(multiplier=0.05, max=1.0),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Locked as exc:
            raise LoadError(
                f"DuckDB database still locked by another process{_holder(str(exc))} after "
                f"{timeout_s:g} s",
                where=self.path,
                hint="another histetl process is writing to it; run again when it has "
                "finished (loaded files are skipped), or raise --lock-timeout",
            ) from None

    def ledger_entry(self, sha256: str, table: str) -> LedgerEntry | None:
        try:
            with self._conn.cursor() as cur:
                cur.execute(
                    LEDGER_SELECT + " WHERE sha256 = ? AND target_table = ?",
                    (sha256, table),
                )
                row = cur.fetchone()
            self._conn.commit()
        except Exception as exc:  # the driver's error classes
            raise _load_error("reading the ledger failed", LEDGER_TABLE, exc) from None
        return LedgerEntry(*row) if row else None

    def ledger(self) -> list[LedgerEntry]:
        try:
            with self._conn.cursor() as cur:
                cur.execute(LEDGER_SELECT + " ORDER BY loaded_at, path")
                rows = cur.fetchall()
            self._conn.commit()
        except Exception as exc:  # the driver's error classes
            raise _load_error("reading the ledger failed", LEDGER_TABLE, exc) from None
        return [LedgerEntry(*row) for row in rows]

    def reader(self) -> DuckDBReader:
        return DuckDBReader(self._conn, self.display, owned=False)

    def replace_window(
        self, target: TableTarget, window: tuple[int, int], rows: pa.Table, entry: LedgerEntry
    ) -> tuple[int, LedgerEntry | None]:
        return replace_in_transaction(self, self.reader, target, window, rows, entry)

    def ensure_table(self, target: TableTarget) -> None:
        if target.name not in self._created:
            try:
                with self._conn.cursor() as cur:
                    cur.execute(create_table_sql(target))
                    _add_new_columns(cur, target)
                    indexed = _has_index(cur, target.name)
                self._conn.commit()
            except HistetlError:
                raise
            except Exception as exc:  # the driver's error classes
                raise _load_error("creating the table failed", target.name, exc) from None
            self._created[target.name] = indexed
            if indexed:
                logger.info(
                    "table {} has an index (a primary key from an older histetl?): DuckDB keeps "
                    "it in memory, so loads into it use memory that grows with the table",
                    target.name,
                )

    def init_tables(self, targets: list[TableTarget]) -> None:
        for target in targets:
            self.ensure_table(target)

    def begin(
        self,
        target: TableTarget,
        sha256: str,
        force: bool,
        merge: bool = False,
        span: tuple[int | None, int | None] = (None, None),
    ) -> DuckDBFileLoad | None:
        """DuckDB always merges (its anti-join insert costs about what a plain one does) and
        has one writer per file, so `span` needs no locks here."""
        self.ensure_table(target)
        if not force and self.ledger_entry(sha256, target.name) is not None:
            return None
        # an in-memory database has no file to write row groups to: it is not capped
        capped = not self._created[target.name] and self.path != ":memory:"
        return DuckDBFileLoad(self._conn, target, capped, self._reopen)

    def _reopen(self) -> None:
        """A new connection, after a commit that failed (a full disk, an I/O error): DuckDB
        has ended the transaction the driver still counts as open, so the next file's
        statements would each commit on their own. An in-memory database is kept as it is
        (reopening it would lose it)."""
        if self.path == ":memory:":
            return
        with contextlib.suppress(Exception):  # it may be unusable by now
            self._conn.close()
        self._conn = self._connect(self._lock_timeout_s)

    def reconnect(self) -> None:
        """A file database does not drop connections; nothing to do."""

    def close(self) -> None:
        try:
            self._conn.close()  # the last connection checkpoints the WAL into the file
        except Exception as exc:  # e.g. a full disk: what is committed stays in the WAL
            logger.warning("closing {}: {}", self.path, message(exc))


class DuckDBFileLoad:
    def __init__(
        self, conn: Any, target: TableTarget, capped: bool, reopen: Callable[[], None]
    ) -> None:
        """`capped`: run under `_MEMORY_LIMIT` until the commit or rollback; `reopen`: the
        sink's fresh connection, when a rollback finds no transaction (after a failed
        commit)."""
        self._conn = conn
        self._reopen = reopen
        self._target = target
        self._capped = capped
        columns = ", ".join(quote(f.name) for f in target.schema)
        keys = ", ".join(quote(c) for c in target.key)
        match = " AND ".join(f"t.{quote(c)} = s.{quote(c)}" for c in target.key)
        ts = quote(target.key[0])
        # Keys repeated within the staged rows (rare: a file that repeats records) are found
        # on the key columns alone; only then does the merge take one row per key (which one
        # does not matter: the key includes the hash of the record's bytes).
        self._repeats = (
            f"SELECT count(*) FROM (SELECT 1 FROM {_STAGE} GROUP BY {keys} HAVING count(*) > 1)"
        )
        self._merge = (
            f"INSERT INTO {quote(target.name)} ({columns}) SELECT {{distinct}}"
            f"{columns} FROM {_STAGE} s WHERE NOT EXISTS (SELECT 1 FROM {quote(target.name)} t "
            f"WHERE t.{ts} BETWEEN {{low}} AND {{high}} AND {match})"
        )
        self._distinct = f"DISTINCT ON ({keys}) "
        ts_type = target.schema.field(target.key[0]).type
        self._ts_literal = f"'{{}}{'+00' if ts_type.tz else ''}'::{duckdb_type(ts_type)}"
        if capped:
            self._set(f"SET memory_limit = '{_MEMORY_LIMIT}'")

    def write_stream(self, batches: Iterator[pa.Table]) -> int:
        """Batch by batch into a temporary stage, merged every whole number of row groups
        (about `_MERGE_BYTES`): memory stays bounded."""
        inserted, staged, per_merge = 0, 0, 0
        low: int | None = None
        high: int | None = None
        with self._conn.cursor() as cur:
            for batch in batches:
                if not per_merge and batch.num_rows:
                    row_bytes = max(batch.nbytes // batch.num_rows, 1)
                    per_merge = _ROW_GROUP * max(_MERGE_BYTES // (row_bytes * _ROW_GROUP), 1)
                while batch.num_rows:
                    # a merge of a partial row group would keep it in memory to the commit
                    head, batch = (
                        batch.slice(0, per_merge - staged),
                        batch.slice(per_merge - staged),
                    )
                    bounds = pc.min_max(head.column(self._target.key[0]).cast(pa.int64()))
                    first, last = bounds["min"].as_py(), bounds["max"].as_py()
                    low = first if low is None else min(low, first)
                    high = last if high is None else max(high, last)
                    try:
                        mode = "append" if staged else "replace"
                        cur.adbc_ingest(_STAGE, head, mode=mode, temporary=True)
                    except Exception as exc:  # the driver's error classes
                        raise _load_error("load failed", self._target.name, exc) from None
                    staged += head.num_rows
                    if staged == per_merge:
                        inserted += self._merge_stage(cur, low, high)
                        staged, low, high = 0, None, None
            if staged:
                inserted += self._merge_stage(cur, low, high)
        return inserted

    def _merge_stage(self, cur: Any, low: int | None, high: int | None) -> int:
        """Insert the staged rows whose key is new; returns how many."""
        literal = self._ts_literal.format
        try:
            cur.execute(self._repeats)
            repeats = cur.fetchone()
            distinct = self._distinct if repeats and repeats[0] else ""
            low_, high_ = literal(_iso_ns(low)), literal(_iso_ns(high))
            cur.execute(self._merge.format(distinct=distinct, low=low_, high=high_))
            row = cur.fetchone()
        except Exception as exc:  # the driver's error classes
            raise _load_error("load failed", self._target.name, exc) from None
        return int(row[0]) if row else 0

    def commit(self, entry: LedgerEntry) -> LedgerEntry:
        try:
            with self._conn.cursor() as cur:
                cur.execute(ledger_upsert_sql(["?"] * len(LEDGER_COLUMNS)), ledger_params(entry))
            self._conn.commit()
        except Exception as exc:  # the driver's error classes
            raise _load_error("commit failed", self._target.name, exc) from None
        self._uncap()
        return entry  # one writer: nothing can have changed since the merge

    def rollback(self) -> None:
        try:
            self._conn.rollback()
            self._uncap()
        except Exception as exc:  # nothing to roll back after a failed commit
            logger.debug("DuckDB rollback: {}", exc)
            self._reopen()

    def _uncap(self) -> None:
        if self._capped:
            self._capped = False
            self._set("RESET memory_limit")

    def _set(self, statement: str) -> None:
        try:
            with self._conn.cursor() as cur:
                cur.execute(statement)
        except Exception as exc:  # the driver's error classes
            raise _load_error("cannot set DuckDB's memory limit", self._target.name, exc) from None


def _iso_ns(ns: int | None) -> str:
    """A timestamp in nanoseconds as DuckDB reads it: 2024-01-02T03:04:05.123456789."""
    return str(np.datetime_as_string(np.datetime64(ns, "ns")))


def _holder(message: str) -> str:
    """' (PID 123)' from DuckDB's lock message, if it names the process."""
    match = re.search(r"\(PID (\d+)\)", message)
    return f" (PID {match.group(1)})" if match else ""


def _prepare_dir(path: Path) -> None:
    """Create the database's folder; an unusable path is one clear line, not a traceback."""
    make_dir(
        path.parent,
        "the folder for the DuckDB database",
        "pick a --db path in a writable folder (duckdb:///dir/file.duckdb)",
    )
    if path.is_dir():
        raise ConfigError(
            "the DuckDB database path is a directory",
            where=str(path),
            hint="name a file: duckdb:///dir/file.duckdb",
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ConfigError(
            "the folder of the DuckDB database is not writable",
            where=str(path.parent),
            hint="pick a --db path in a writable folder, or fix its permissions",
        )


def _load_error(what: str, table: str, exc: BaseException) -> HistetlError:
    if stop := stopped_by_signal(exc):
        return stop
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = None
    if full_disk(exc):
        hint = FULL_DISK_HINT
    elif "memory" in str(exc).lower():
        hint = "DuckDB ran out of memory: load smaller files, or use PostgreSQL for large loads"
    return LoadError(f"{what}: {first}", where=f"DuckDB table {table}", hint=hint)
