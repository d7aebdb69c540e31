"""A Delta Lake target: `delta:///path/to/lake` on local disk (relative; `delta:////abs` for an
absolute path, the rule of `duckdb:///`), or `delta+s3://bucket/prefix` on S3 or an
S3-compatible server (credentials and endpoint from the standard AWS variables, see
`histetl.objstore`).

Each canonical table is one Delta table at `<lake>/<table>`, partitioned by `date` (the UTC date
of the table's index timestamp). Columns use the PostgreSQL layout of `histetl.sinks.pgschema`:
prices decimal(19,9), each timestamp as microseconds plus its exact `X_ns` int64, `uint64` as
decimal(20,0). A file's rows and its ledger record go in ONE Delta commit: a MERGE that inserts
only the rows whose primary key is not yet in the table, carrying the application transaction
`histetl:<sha256>` and the ledger record as commit metadata. A rerun checks the transaction id
(no data is read); a commit conflict with a concurrent writer is retried.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from loguru import logger

from histetl import objstore
from histetl.errors import ConfigError, LoadError
from histetl.sinks import LedgerEntry, TableTarget
from histetl.sinks.pgschema import pg_arrow_schema, to_pg_arrow

PARTITION = "date"
LEDGER_KEY = "histetl.ledger"
_MAX_CONFLICT_RETRIES = 20


def delta_location(uri: str) -> str:
    """The lake's root: a local path (delta:///...) or s3://bucket/prefix (delta+s3://...)."""
    scheme, rest = uri.split(":", 1)
    if scheme.lower() == "delta+s3":
        return objstore.check_url(f"s3:{rest}", "--db")
    if not rest.startswith("///") or len(rest) == 3:
        raise ConfigError(
            f"bad Delta Lake URI {uri!r}",
            where="--db",
            hint="use delta:///relative/lake, delta:////absolute/lake or delta+s3://bucket/prefix",
        )
    return rest[3:]


def app_id(sha256: str) -> str:
    return f"histetl:{sha256}"


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


class DeltaSink:
    def __init__(self, uri: str) -> None:
        location = delta_location(uri)
        self.backend = "delta"
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
        try:
            self.local.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the lake folder: {exc.strerror}",
                where=str(self.local),
                hint="pick a --db path in a writable folder (delta:///dir/lake)",
            ) from None

    @property
    def connection(self) -> Any:
        raise LoadError(
            "this command needs a SQL connection, which a Delta Lake target does not have",
            where=self.display,
            hint="use a duckdb:/// or postgresql:// target for this command",
        )

    def table_uri(self, name: str) -> str:
        if self.local is None:
            return f"{self.root}/{name}"
        return str((self.local / name).resolve())

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
                storage_options=self.storage_options,
            )
        except OSError as exc:
            raise objstore.storage_error(exc, self.display) from None
        except DeltaError as exc:
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
        for name in self._table_names():
            dtable = self.open_table(name)
            if dtable is not None:
                entries.extend(self._entries(dtable))
        latest = {(e.sha256, e.table): e for e in sorted(entries, key=lambda e: e.loaded_at)}
        return sorted(latest.values(), key=lambda e: (e.loaded_at, e.path))

    def _table_names(self) -> list[str]:
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
    """Buffers the file's rows (Arrow, columnar) and writes them in one MERGE commit."""

    def __init__(
        self, sink: DeltaSink, target: TableTarget, sha256: str, prior: int | None
    ) -> None:
        self._sink = sink
        self._target = target
        self._sha256 = sha256
        self._version = (prior or 0) + 1
        self._parts: list[pa.Table] = []
        self._expected = 0  # rows of _parts not yet in the table ...
        self._checked_at: int | None = None  # ... as of this table version

    def write_stream(self, batches: Iterator[pa.Table]) -> int:
        fresh = [to_lake_arrow(b, self._target) for b in batches if b.num_rows]
        if not fresh:
            return 0
        self._parts.extend(fresh)
        source = pa.concat_tables(self._parts)
        table = self._sink.open_table(self._target.name)  # the version before the read-back
        self._checked_at = table.version() if table is not None else None
        try:
            total_new = source.num_rows - _present(self._sink, self._target, source)
        except OSError as exc:
            raise objstore.storage_error(exc, self._sink.table_uri(self._target.name)) from None
        new = total_new - self._expected
        self._expected = total_new
        return int(new)

    def commit(self, entry: LedgerEntry) -> None:
        name = self._target.name
        for attempt in range(_MAX_CONFLICT_RETRIES):
            dtable = self._sink.ensure_table(self._target)
            done = dtable.transaction_version(app_id(self._sha256))
            if done is not None and done >= self._version:
                logger.info("{}: loaded meanwhile by another writer", entry.path)
                return
            try:
                if self._merge(dtable, entry):
                    return
                logger.debug("{}: another writer stored its rows meanwhile; again", name)
            except CommitFailedError as exc:
                logger.debug("Delta commit conflict on {} (attempt {}): {}", name, attempt + 1, exc)
                time.sleep(min(0.05 * 2**attempt, 1.0))
            except OSError as exc:
                raise objstore.storage_error(exc, self._sink.table_uri(name)) from None
            except DeltaError as exc:
                raise LoadError(
                    f"Delta commit failed: {exc}", where=self._sink.table_uri(name)
                ) from None
        raise LoadError(
            f"Delta commit kept conflicting with other writers ({_MAX_CONFLICT_RETRIES} tries)",
            where=self._sink.table_uri(name),
            hint="run again: loaded files are skipped",
        )

    def _merge(self, dtable: DeltaTable, entry: LedgerEntry) -> bool:
        """One commit with the file's new rows, its transaction id and its ledger record
        (without new rows: a commit of the transaction and the record alone). False when the
        MERGE found every row stored meanwhile, and so committed nothing."""
        source = (
            pa.concat_tables(self._parts)
            if self._parts
            else lake_schema(self._target).empty_table()
        )
        source = _first_of_each_key(source, [PARTITION, *_key(self._target)])
        inserted = self._expected
        if source.num_rows and dtable.version() != self._checked_at:  # another writer committed
            inserted = source.num_rows - _present(self._sink, self._target, source)
        stored = replace(
            entry, loaded=inserted, duplicates=entry.duplicates + entry.loaded - inserted
        )
        fields = asdict(stored)
        fields["loaded_at"] = stored.loaded_at.astimezone(dt.UTC).isoformat()
        props = CommitProperties(
            custom_metadata={LEDGER_KEY: json.dumps(fields)},
            app_transactions=[Transaction(app_id(self._sha256), self._version)],
            max_commit_retries=0,
        )
        if inserted == 0:  # rows are never deleted: nothing of the file can become new
            dtable.create_write_transaction(
                [], "append", dtable.schema(), [PARTITION], commit_properties=props
            )
            return True
        days = sorted({d.isoformat() for d in source.column(PARTITION).unique().to_pylist()})
        on = " AND ".join(f't."{c}" = s."{c}"' for c in (PARTITION, *_key(self._target)))
        on += ' AND t."date" IN (' + ", ".join(f"'{d}'" for d in days) + ")"
        metrics = (
            dtable.merge(
                source, predicate=on, source_alias="s", target_alias="t", commit_properties=props
            )
            .when_not_matched_insert_all()
            .execute()
        )
        return int(metrics["num_target_rows_inserted"]) > 0

    def rollback(self) -> None:
        self._parts = []


def _key(target: TableTarget) -> list[str]:
    schema = pg_arrow_schema(target)
    keys = []
    for col in target.key:
        keys.append(col + "_ns" if f"{col}_ns" in schema.names else col)
    return keys


def _first_of_each_key(source: pa.Table, keys: list[str]) -> pa.Table:
    """The file's rows without repeats of a key (the first one wins, as ON CONFLICT DO NOTHING
    keeps the first): a MERGE inserts every unmatched source row, repeats included."""
    import polars as pl

    frame = pl.from_arrow(source.select(keys))
    assert isinstance(frame, pl.DataFrame)
    if frame.is_unique().all():
        return source
    first = frame.with_row_index().unique(subset=keys, keep="first", maintain_order=True)
    return source.take(first["index"].to_arrow())


def _present(sink: DeltaSink, target: TableTarget, source: pa.Table) -> int:
    """How many source rows are already in the table (read back only the file's partitions)."""
    import polars as pl

    dtable = sink.open_table(target.name)
    keys = [PARTITION, *_key(target)]
    src = pl.from_arrow(source.select(keys))
    assert isinstance(src, pl.DataFrame)
    if dtable is None:
        return src.height - src.unique().height
    days = source.column(PARTITION).unique().to_pylist()
    ds = dtable.to_pyarrow_dataset()
    have = ds.to_table(columns=keys, filter=pc.field(PARTITION).isin(days))
    old = pl.from_arrow(have)
    assert isinstance(old, pl.DataFrame)
    dedup = src.unique()
    new = dedup.join(old, on=keys, how="anti").height
    return src.height - new
