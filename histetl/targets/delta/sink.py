"""A Delta Lake target: `delta:///path/to/lake` on local disk (relative; `delta:////abs` for an
absolute path, the rule of `duckdb:///`), or `delta+s3://bucket/prefix` on S3 or an
S3-compatible server (credentials and endpoint from the standard AWS variables, see
`histetl.objstore`).

Each canonical table is one Delta table at `<lake>/<table>`, partitioned by `date` (the UTC date
of the table's index timestamp). Columns use the PostgreSQL layout of `targets.postgres.schema`:
prices decimal(19,9), each timestamp as microseconds plus its exact `X_ns` int64, `uint64` as
decimal(20,0). A file's rows and its ledger record go in ONE Delta commit: an append of the
rows whose primary key is neither earlier in the file nor in the table, carrying the
application transaction `histetl:<sha256>` and the ledger record as commit metadata. The commit
is made on the table version the duplicate check read, without Delta's own retries: after
another writer's commit it fails, and the check and the commit are done again. A rerun checks
the transaction id (no data is read); its version is the commit's table version, which holds
the record (`ledger`).

Memory is flat in the file size: the new rows wait in a temporary file, and each batch is
checked against only the keys in its own span of the index timestamp (the partition's source
and the key's first column, so a duplicate shares both): the file's earlier keys from a
`KeyLog` (on disk past a threshold), the table's from the Parquet row groups of those days
whose statistics overlap the span.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction
from loguru import logger

from histetl import objstore
from histetl.errors import ConfigError, HistetlError, LoadError
from histetl.outputs import make_dir
from histetl.targets.base import LedgerEntry, Reader, TableTarget
from histetl.targets.delta.commit import commit_retrying, ledger_commit
from histetl.targets.delta.layout import (
    KEEP_LOG,
    NO_LOG_CLEANUP,
    PARTITION,
    delta_location,
    lake_key,
    lake_schema,
    to_lake_arrow,
)
from histetl.targets.delta.ledger import (
    app_id,
    commit_path,
    record_in_commit,
    records,
)
from histetl.targets.delta.spill import KEYS_IN_MEMORY, KeyLog, RowSpill

# Row groups of 128Ki rows: the Parquet writer buffers a row group's rows (1Mi by default)
_ROW_GROUP = 1 << 17  # rows per Parquet row group
_ROWS_PER_FILE = 1 << 22  # rows per Parquet data file


def existing_lake(uri: str) -> DeltaSink:
    """The lake at `uri` for commands that read or maintain one: a local lake folder must
    exist (nothing is created); on S3 a missing bucket or bad credentials fail when used."""
    location = delta_location(uri)
    if not objstore.is_s3(location) and not Path(location).is_dir():
        raise ConfigError(
            f"no Delta lake at {location}",
            where="--db",
            hint="load something first (histetl replay / run) or fix the path",
        )
    return DeltaSink(uri)


class DeltaSink:
    def __init__(self, uri: str, keys_in_memory: int = KEYS_IN_MEMORY) -> None:
        """`keys_in_memory`: how many keys of a file's new rows a load holds in memory before
        it writes them to disk (see `KeyLog`)."""
        location = delta_location(uri)
        self.uri = uri
        self.keys_in_memory = keys_in_memory
        self.storage_options: dict[str, str] | None = None
        self.local: Path | None = None
        if objstore.is_s3(location):
            self.root = location
            self.display = f"delta+{location}"
            self.storage_options = objstore.delta_options()
            self.open_table("_histetl_probe")  # a missing bucket or bad credentials: fail now
            return
        self.local = Path(location)
        self.root = str(self.local)
        self.display = f"delta:///{self.local}"
        make_dir(
            self.local,
            "the lake folder",
            "pick a --db path in a writable folder (delta:///dir/lake)",
        )

    def reader(self) -> Reader:
        """The lake as it is now (a snapshot of each table's current version)."""
        from histetl.targets.delta.read import DeltaReader

        return DeltaReader(self)

    def replace_window(
        self, target: TableTarget, window: tuple[int, int], rows: pa.Table, entry: LedgerEntry
    ) -> tuple[int, LedgerEntry | None]:
        from histetl.targets.delta.replace import replace_window

        return replace_window(self, target, window, rows, entry)

    def table_uri(self, name: str) -> str:
        if self.local is None:
            return f"{self.root}/{name}"
        return str((self.local / name).resolve())

    def create_file(self, relative: str) -> IO[bytes]:
        """A new file at `relative` under the lake root, for writing."""
        if self.local is None:
            return objstore.create(f"{self.root}/{relative}")
        path = self.local / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("wb")

    def open_file(self, relative: str) -> IO[bytes]:
        """The file at `relative` under the lake root, for reading."""
        if self.local is None:
            return objstore.open_file(f"{self.root}/{relative}")[0]
        return (self.local / relative).open("rb")

    def open_table(self, name: str) -> DeltaTable | None:
        try:
            return DeltaTable(self.table_uri(name), storage_options=self.storage_options)
        except TableNotFoundError:
            return None
        except OSError as exc:  # object storage: unreachable, no bucket, denied
            raise objstore.storage_error(exc, self.display) from None

    def ensure_table(self, target: TableTarget) -> DeltaTable:
        table = self.open_table(target.name)
        if table is not None:
            return table
        try:
            return DeltaTable.create(
                self.table_uri(target.name),
                lake_schema(target),
                partition_by=[PARTITION],
                mode="ignore",
                configuration=NO_LOG_CLEANUP,
                storage_options=self.storage_options,
            )
        except OSError as exc:
            raise objstore.storage_error(exc, self.display) from None
        except DeltaError as exc:
            table = self.open_table(target.name)  # another writer created it at the same time
            if table is not None:
                return table
            raise LoadError(
                f"cannot create Delta table: {exc}", where=self.table_uri(target.name)
            ) from None

    def init_tables(self, targets: list[TableTarget]) -> None:
        for target in targets:
            self.ensure_table(target)

    def ledger_entry(self, sha256: str, table: str) -> LedgerEntry | None:
        """The file's ledger record, from the one commit its transaction version names; by
        the whole history in a lake written by an earlier histetl (its versions counted
        loads)."""
        dtable = self.open_table(table)
        version = None if dtable is None else dtable.transaction_version(app_id(sha256))
        if dtable is None or version is None:
            return None
        try:
            with self.open_file(commit_path(table, version)) as handle:
                entry = record_in_commit(handle.read())
        except (OSError, HistetlError):  # no such commit file (cleaned up): read the history
            entry = None
        if entry is not None and entry.sha256 == sha256:
            return entry
        return next((e for e in records(dtable) if e.sha256 == sha256), None)

    def ledger(self) -> list[LedgerEntry]:
        entries: list[LedgerEntry] = []
        for name in self.table_names():
            dtable = self.open_table(name)
            if dtable is not None:
                entries.extend(records(dtable))
        latest = {(e.sha256, e.table): e for e in sorted(entries, key=lambda e: e.loaded_at)}
        return sorted(latest.values(), key=lambda e: (e.loaded_at, e.path))

    def table_names(self) -> list[str]:
        """The lake's folders that may hold a table (each is opened to be sure)."""
        if self.local is None:
            return objstore.folders(self.root, self.display)
        if not self.local.is_dir():
            return []
        return sorted(c.name for c in self.local.iterdir() if (c / "_delta_log").is_dir())

    def begin(
        self,
        target: TableTarget,
        sha256: str,
        force: bool,
        merge: bool = False,
        span: tuple[int | None, int | None] = (None, None),
    ) -> DeltaFileLoad | None:
        prior = self.ensure_table(target).transaction_version(app_id(sha256))
        if not force and prior is not None:
            return None
        return DeltaFileLoad(self, target, sha256, prior)

    def reconnect(self) -> None:
        """Nothing to reconnect: every table is opened anew."""

    def close(self) -> None:
        """Nothing held open."""


class DeltaFileLoad:
    """Spills the file's new rows (Arrow IPC, in the lake layout) to a temporary file as the
    batches stream, and appends them in one commit that streams them back. Memory holds a
    batch and a bounded number of keys, never the file's rows or all of its keys: each batch
    is checked against the earlier keys of the file (`KeyLog`, on disk past the sink's
    `keys_in_memory`) and the table's keys (read from the table) in its own span of the index
    timestamp."""

    def __init__(
        self, sink: DeltaSink, target: TableTarget, sha256: str, prior: int | None
    ) -> None:
        self._sink = sink
        self._target = target
        self._sha256 = sha256
        self._prior = prior  # the file's transaction version when the load began
        self._key = lake_key(target)  # the index timestamp (exact ns) first: it sets the day
        self._spill = RowSpill(lake_schema(target))
        self._seen = KeyLog(self._key[0], sink.keys_in_memory)
        self._spilled = 0
        self._checked: ds.Dataset | None = None  # the table at the version checked against
        self._checked_at: int | None = None

    def write_stream(self, batches: Iterator[pa.Table]) -> int:
        """Spills each batch's rows whose key is neither earlier in the file (the first one
        wins, as ON CONFLICT DO NOTHING keeps it) nor in the table; returns how many."""
        name = self._target.name
        if self._checked_at is None:
            table = self._sink.open_table(name)  # the version before the read-backs
            self._checked_at = table.version() if table is not None else -1
            self._checked = self._dataset(table)
        spilled = 0
        for batch in batches:
            if not batch.num_rows:
                continue
            rows = to_lake_arrow(batch, self._target)
            keys = _frame(rows.select(self._key)).with_row_index()
            low, high = _span(keys, self._key[0])
            fresh = keys.unique(subset=self._key, keep="first", maintain_order=True)
            for present in itertools.chain(
                self._seen.between(low, high), self._table_keys(self._checked, rows, low, high)
            ):
                fresh = fresh.join(present, on=self._key, how="anti")
            if fresh.height:
                # in file order (a join keeps no order): tight time statistics per row group
                self._spill.write(rows.take(fresh["index"].sort().to_arrow()))
                self._seen.add(fresh.drop("index"))
                spilled += fresh.height
        self._spilled += spilled
        return spilled

    def commit(self, entry: LedgerEntry) -> LedgerEntry:
        """The file's commit; after another writer's commit (a conflict) the check and the
        commit are done again."""
        stored = commit_retrying(
            self._sink.table_uri(self._target.name),
            lambda: self._commit_once(entry),
            "run again: loaded files are skipped",
        )
        self.rollback()  # nothing left to roll back: only the temporary files go
        return stored

    def _commit_once(self, entry: LedgerEntry) -> LedgerEntry:
        dtable = self._sink.ensure_table(self._target)
        done = dtable.transaction_version(app_id(self._sha256))
        if done is not None and done != self._prior:
            logger.info("{}: loaded meanwhile by another writer", entry.path)
            return replace(entry, loaded=0, duplicates=entry.duplicates + entry.loaded)
        return self._append(dtable, entry)

    def _append(self, dtable: DeltaTable, entry: LedgerEntry) -> LedgerEntry:
        """One commit with the file's new rows, its transaction id and its ledger record
        (without new rows: a commit of the transaction and the record alone)."""
        recheck = None
        if self._spilled and dtable.version() != self._checked_at:
            logger.debug("{}: another writer committed since the check; again", entry.path)
            recheck = self._dataset(dtable)
        # An append based on `dtable`'s version, which the keys were checked against: it
        # commits only if no other writer committed since (else it is retried from the top).
        # Without new rows it commits the transaction and the record alone.
        actions, inserted = self._write_parts(recheck) if self._spilled else ([], 0)
        stored_entry = replace(
            entry, loaded=inserted, duplicates=entry.duplicates + entry.loaded - inserted
        )
        # the transaction's version is this commit's table version: it finds the record
        props = ledger_commit(stored_entry, dtable.version() + 1)
        dtable.create_write_transaction(
            actions,
            "append",
            dtable.schema(),
            [PARTITION],
            commit_properties=props,
            post_commithook_properties=KEEP_LOG,
        )
        return stored_entry

    def _write_parts(
        self, recheck: ds.Dataset | None
    ) -> tuple[list[AddAction | RemoveAction], int]:
        """The spilled rows (less those now in `recheck`) as Parquet files in their day
        folders, streamed: a file per day holds up to _ROWS_PER_FILE rows; and how many rows.
        Files of a commit that fails stay unreferenced (invisible to readers; Delta's vacuum
        removes them)."""
        parts: dict[dt.date, _Part] = {}
        actions: list[AddAction | RemoveAction] = []
        written = 0
        for batch in self._spill.batches():
            rows = pa.Table.from_batches([batch])
            if recheck is not None:
                keys = _frame(rows.select(self._key)).with_row_index()
                low, high = _span(keys, self._key[0])
                for present in self._table_keys(recheck, rows, low, high):
                    keys = keys.join(present, on=self._key, how="anti")
                rows = rows.take(keys["index"].sort().to_arrow())
            written += rows.num_rows
            for day in pc.unique(rows.column(PARTITION)).to_pylist():
                part = parts.get(day)
                if part is None:
                    part = parts[day] = _Part(self._sink, self._target.name, day, rows.schema)
                part.write(rows.filter(pc.equal(rows.column(PARTITION), day)))
                if part.rows >= _ROWS_PER_FILE:
                    actions.append(parts.pop(day).close())
        actions += [part.close() for part in parts.values()]
        return actions, written

    def _dataset(self, dtable: DeltaTable | None) -> ds.Dataset | None:
        """The table's rows at `dtable`'s version, to read keys from; None without rows."""
        if dtable is None or not dtable.file_uris():
            return None
        try:
            return dtable.to_pyarrow_dataset()
        except OSError as exc:
            raise objstore.storage_error(exc, self._sink.table_uri(self._target.name)) from None

    def _table_keys(
        self, dataset: ds.Dataset | None, rows: pa.Table, low: int, high: int
    ) -> Iterator[pl.DataFrame]:
        """The keys of the table's rows whose index timestamp is in [low, high], a scan batch
        at a time: only the day partitions of `rows` are listed, only the row groups whose
        statistics overlap are read (a key shares its day and its timestamp with any
        duplicate of it)."""
        if dataset is None:
            return
        days = pc.min_max(rows.column(PARTITION))
        ts = pc.field(self._key[0])
        where = (
            (pc.field(PARTITION) >= days["min"])
            & (pc.field(PARTITION) <= days["max"])
            & (ts >= low)
            & (ts <= high)
        )
        try:
            for batch in dataset.to_batches(columns=self._key, filter=where):
                if batch.num_rows:
                    yield _frame(pa.Table.from_batches([batch]))
        except OSError as exc:
            raise objstore.storage_error(exc, self._sink.table_uri(self._target.name)) from None

    def rollback(self) -> None:
        self._spill.close()
        self._seen.close()


class _Part:
    """One Parquet data file of a day partition, written as rows arrive (the partition column
    lives in the folder name and the log, not in the file)."""

    def __init__(self, sink: DeltaSink, table: str, day: dt.date, schema: pa.Schema) -> None:
        self.path = f"{PARTITION}={day.isoformat()}/part-{uuid.uuid4()}.parquet"
        self.day = day.isoformat()
        self._handle = sink.create_file(f"{table}/{self.path}")
        file_schema = schema.remove(schema.get_field_index(PARTITION))
        self._writer = pq.ParquetWriter(
            self._handle, file_schema, compression="snappy", write_statistics=True
        )
        self.rows = 0

    def write(self, rows: pa.Table) -> None:
        self._writer.write_table(rows.drop_columns([PARTITION]), row_group_size=_ROW_GROUP)
        self.rows += rows.num_rows

    def close(self) -> AddAction:
        self._writer.close()
        size = self._handle.tell()
        self._handle.close()
        return AddAction(
            self.path,
            size,
            {PARTITION: self.day},
            int(time.time() * 1000),
            True,
            json.dumps({"numRecords": self.rows}),
        )


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _span(keys: pl.DataFrame, ts: str) -> tuple[int, int]:
    """The lowest and highest `ts` of a batch's keys."""
    low, high = keys[ts].min(), keys[ts].max()
    assert isinstance(low, int)
    assert isinstance(high, int)
    return low, high
