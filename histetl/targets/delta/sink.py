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
the transaction id (no data is read).
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable, PostCommitHookProperties
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction
from loguru import logger

from histetl import objstore
from histetl.errors import ConfigError, LoadError
from histetl.outputs import make_dir
from histetl.targets.base import LedgerEntry, Reader, TableTarget, local_path
from histetl.targets.delta.commit import LEDGER_KEY, app_id, commit_retrying, ledger_commit
from histetl.targets.postgres.schema import pg_arrow_schema, to_pg_arrow

PARTITION = "date"
# Checkpoints as usual, but never the clean-up of expired commit files: they hold the ledger
# (the table property for every writer; the hook option for tables made without it).
NO_LOG_CLEANUP = {"delta.enableExpiredLogCleanup": "false"}
KEEP_LOG = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)
# Row groups of 128Ki rows: the Parquet writer buffers a row group's rows (1Mi by default)
_ROW_GROUP = 1 << 17  # rows per Parquet row group
_ROWS_PER_FILE = 1 << 22  # rows per Parquet data file


def delta_location(uri: str) -> str:
    """The lake's root: a local path (delta:///...) or s3://bucket/prefix (delta+s3://...)."""
    scheme, rest = uri.split(":", 1)
    if scheme.lower() == "delta+s3":
        return objstore.check_url(f"s3:{rest}", "--db")
    return local_path(
        uri,
        "Delta Lake",
        "use delta:///relative/lake, delta:////absolute/lake or delta+s3://bucket/prefix",
    )


def lake_schema(target: TableTarget) -> pa.Schema:
    return pg_arrow_schema(target).append(pa.field(PARTITION, pa.date32(), nullable=False))


def to_lake_arrow(batch: pa.Table, target: TableTarget) -> pa.Table:
    """The PostgreSQL layout plus the partition column (UTC date of the index timestamp)."""
    table = to_pg_arrow(batch, target)
    ts = batch.column(target.time_column).cast(pa.timestamp("ns", tz="UTC"))
    days = pc.cast(pc.divide(pc.cast(ts, pa.int64()), 86_400_000_000_000), pa.int32())
    return table.append_column(
        pa.field(PARTITION, pa.date32(), nullable=False), days.cast(pa.date32())
    )


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
    def __init__(self, uri: str) -> None:
        location = delta_location(uri)
        self.uri = uri
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

        return DeltaReader(self.uri)

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
        dtable = self.open_table(table)
        if dtable is None or dtable.transaction_version(app_id(sha256)) is None:
            return None
        for entry in self._entries(dtable):
            if entry.sha256 == sha256:
                return entry
        return None

    def ledger(self) -> list[LedgerEntry]:
        entries: list[LedgerEntry] = []
        for name in self.table_names():
            dtable = self.open_table(name)
            if dtable is not None:
                entries.extend(self._entries(dtable))
        latest = {(e.sha256, e.table): e for e in sorted(entries, key=lambda e: e.loaded_at)}
        return sorted(latest.values(), key=lambda e: (e.loaded_at, e.path))

    def table_names(self) -> list[str]:
        """The lake's folders that may hold a table (each is opened to be sure)."""
        if self.local is None:
            return objstore.folders(self.root, self.display)
        if not self.local.is_dir():
            return []
        return sorted(c.name for c in self.local.iterdir() if (c / "_delta_log").is_dir())

    @staticmethod
    def _entries(dtable: DeltaTable) -> list[LedgerEntry]:
        out = []
        for commit in dtable.history():
            raw = commit.get(LEDGER_KEY)
            if raw:
                fields = json.loads(raw)
                fields["loaded_at"] = dt.datetime.fromisoformat(fields["loaded_at"])
                out.append(LedgerEntry(**fields))
        return out

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
    """Spills the file's new rows (Arrow IPC, in the lake layout) to an unlinked temporary file
    as the batches stream, and appends them in one commit that streams them back: memory holds
    a batch, the keys of the file's new rows and those of the table's rows on its days, never
    the file's rows."""

    def __init__(
        self, sink: DeltaSink, target: TableTarget, sha256: str, prior: int | None
    ) -> None:
        self._sink = sink
        self._target = target
        self._sha256 = sha256
        self._version = (prior or 0) + 1
        self._keys = [PARTITION, *lake_key(target)]
        self._spill = _Spill(lake_schema(target))
        self._new = pl.DataFrame(schema=_key_schema(target))  # keys of the spilled rows
        self._stored = pl.DataFrame(schema=_key_schema(target))  # the table's, on _days
        self._days: set[dt.date] = set()
        self._checked_at: int | None = None  # the table version _stored was read at

    def write_stream(self, batches: Iterator[pa.Table]) -> int:
        """Spills each batch's rows whose key is neither earlier in the file (the first one
        wins, as ON CONFLICT DO NOTHING keeps it) nor in the table; returns how many."""
        name = self._target.name
        if self._checked_at is None:
            table = self._sink.open_table(name)  # the version before the read-backs
            self._checked_at = table.version() if table is not None else -1
        spilled = 0
        for batch in batches:
            if not batch.num_rows:
                continue
            rows = to_lake_arrow(batch, self._target)
            keys = _frame(rows.select(self._keys)).with_row_index()
            days = set(keys[PARTITION].unique().to_list()) - self._days
            if days:
                try:
                    self._stored = pl.concat(
                        [self._stored, _stored_keys(self._sink, self._target, days)]
                    )
                except OSError as exc:
                    raise objstore.storage_error(exc, self._sink.table_uri(name)) from None
                self._days |= days
            # Only keys within the batch's time span can match: a file in time order
            # compares each batch with a few earlier keys, not all of them.
            ts = pl.col(self._keys[1])
            span = ts.is_between(keys[self._keys[1]].min(), keys[self._keys[1]].max())
            fresh = (
                keys.unique(subset=self._keys, keep="first", maintain_order=True)
                .join(self._new.filter(span), on=self._keys, how="anti")
                .join(self._stored.filter(span), on=self._keys, how="anti")
            )
            if fresh.height:
                self._spill.write(rows.take(fresh["index"].to_arrow()))
                self._new = pl.concat([self._new, fresh.drop("index")], rechunk=False)
                spilled += fresh.height
        return spilled

    def commit(self, entry: LedgerEntry) -> LedgerEntry:
        """The file's commit; after another writer's commit (a conflict) the check and the
        commit are done again."""
        try:
            return commit_retrying(
                self._sink.table_uri(self._target.name),
                lambda: self._commit_once(entry),
                "run again: loaded files are skipped",
            )
        finally:
            self._spill.close()  # committed, or failed (the caller rolls back)

    def _commit_once(self, entry: LedgerEntry) -> LedgerEntry:
        dtable = self._sink.ensure_table(self._target)
        done = dtable.transaction_version(app_id(self._sha256))
        if done is not None and done >= self._version:
            logger.info("{}: loaded meanwhile by another writer", entry.path)
            return replace(entry, loaded=0, duplicates=entry.duplicates + entry.loaded)
        return self._append(dtable, entry)

    def _append(self, dtable: DeltaTable, entry: LedgerEntry) -> LedgerEntry:
        """One commit with the file's new rows, its transaction id and its ledger record
        (without new rows: a commit of the transaction and the record alone)."""
        inserted, stored = self._new.height, None
        if inserted and dtable.version() != self._checked_at:
            logger.debug("{}: another writer committed since the check; again", entry.path)
            stored = _stored_keys(self._sink, self._target, self._days, dtable)
            inserted -= self._new.join(stored, on=self._keys, how="semi").height
        stored_entry = replace(
            entry, loaded=inserted, duplicates=entry.duplicates + entry.loaded - inserted
        )
        props = ledger_commit(stored_entry, self._version)
        # An append based on `dtable`'s version, which the keys were checked against: it
        # commits only if no other writer committed since (else it is retried from the top).
        # Without new rows it commits the transaction and the record alone.
        actions: list[AddAction | RemoveAction] = []
        if inserted:
            actions += self._write_parts(stored)
        dtable.create_write_transaction(
            actions,
            "append",
            dtable.schema(),
            [PARTITION],
            commit_properties=props,
            post_commithook_properties=KEEP_LOG,
        )
        return stored_entry

    def _write_parts(self, stored: pl.DataFrame | None) -> list[AddAction]:
        """The spilled rows (less those in `stored`) as Parquet files in their day folders,
        streamed: a file per day holds up to _ROWS_PER_FILE rows. Files of a commit that
        fails stay unreferenced (invisible to readers; Delta's vacuum removes them)."""
        parts: dict[dt.date, _Part] = {}
        actions: list[AddAction] = []
        for batch in self._spill.reader(self._keys, stored):
            rows = pa.Table.from_batches([batch])
            for day in pc.unique(rows.column(PARTITION)).to_pylist():
                part = parts.get(day)
                if part is None:
                    part = parts[day] = _Part(self._sink, self._target.name, day, rows.schema)
                part.write(rows.filter(pc.equal(rows.column(PARTITION), day)))
                if part.rows >= _ROWS_PER_FILE:
                    actions.append(parts.pop(day).close())
        actions += [part.close() for part in parts.values()]
        return actions

    def rollback(self) -> None:
        self._spill.close()
        self._new = self._new.clear()


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


class _Spill:
    """Record batches written to an unlinked temporary file (gone with the process, even a
    killed one) and read back as a stream, as often as asked."""

    def __init__(self, schema: pa.Schema) -> None:
        self._schema = schema
        self._file: IO[bytes] | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._batches = 0

    def write(self, rows: pa.Table) -> None:
        if self._writer is None:
            self._file = tempfile.TemporaryFile(prefix="histetl-delta-")  # noqa: SIM115
            self._writer = pa.ipc.new_file(pa.PythonFile(self._file, mode="w"), self._schema)
        for batch in rows.to_batches():
            self._writer.write_batch(batch)
            self._batches += 1

    def reader(self, keys: list[str], stored: pl.DataFrame | None) -> pa.RecordBatchReader:
        """The rows spilled, without those whose `keys` are in `stored`."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is None:
            return pa.RecordBatchReader.from_batches(self._schema, [])
        self._file.seek(0)
        ipc = pa.ipc.open_file(pa.PythonFile(self._file, mode="r"))

        def batches() -> Iterator[pa.RecordBatch]:
            for i in range(ipc.num_record_batches):
                batch = ipc.get_batch(i)
                if stored is not None:
                    index = _frame(pa.Table.from_batches([batch]).select(keys)).with_row_index()
                    keep = index.join(stored, on=keys, how="anti")["index"].sort()
                    batch = batch.take(keep.to_arrow())
                yield batch

        return pa.RecordBatchReader.from_batches(self._schema, batches())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._writer = None


def lake_key(target: TableTarget) -> list[str]:
    """The primary key in the lake's columns (a timestamp by its exact X_ns)."""
    schema = pg_arrow_schema(target)
    keys = []
    for col in target.key:
        keys.append(col + "_ns" if f"{col}_ns" in schema.names else col)
    return keys


def _key_schema(target: TableTarget) -> pl.Schema:
    return _frame(lake_schema(target).empty_table().select([PARTITION, *lake_key(target)])).schema


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _stored_keys(
    sink: DeltaSink, target: TableTarget, days: set[dt.date], dtable: DeltaTable | None = None
) -> pl.DataFrame:
    """The keys of the table's rows on these days (only those partitions are read), at
    `dtable`'s version (default: the latest)."""
    dtable = dtable or sink.open_table(target.name)
    keys = [PARTITION, *lake_key(target)]
    if dtable is None or not days:
        return pl.DataFrame(schema=_key_schema(target))
    ds = dtable.to_pyarrow_dataset()
    return _frame(ds.to_table(columns=keys, filter=pc.field(PARTITION).isin(sorted(days))))
