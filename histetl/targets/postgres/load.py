"""One file's load into PostgreSQL (`PostgresSink.begin` starts it): COPY into the table, or
through a staging table when rows may already be there, and the ledger row in the same
transaction."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from histetl.prefetch import Prefetch
from histetl.sqltext import quote
from histetl.targets.base import (
    LEDGER_COLUMNS,
    LedgerEntry,
    MergeRequired,
    TableTarget,
    ledger_params,
    ledger_upsert_sql,
)
from histetl.targets.postgres.conn import (
    StallGuard,
)
from histetl.targets.postgres.schema import (
    pg_arrow_schema,
    to_pg_arrow,
)

if TYPE_CHECKING:
    from histetl.targets.postgres.sink import PostgresSink

_UNIQUE_VIOLATION = "23505"
COPY_CHUNK_ROWS = 16_384  # rows per Arrow chunk handed to ADBC: it encodes, then sends, each
MISSING_FLUSH_ROWS = 100_000  # missing rows of overlapping chunks gathered into one COPY


class PostgresFileLoad:
    def __init__(
        self,
        sink: PostgresSink,
        target: TableTarget,
        merge: bool,
        span: tuple[int | None, int | None] = (None, None),
    ) -> None:
        self._sink = sink
        self._target = target
        self.merge = merge
        self._span = span
        self._schema = pg_arrow_schema(target)
        self._stage = "histetl_stage_" + hashlib.sha256(target.name.encode()).hexdigest()[:12]
        self._guard: StallGuard | None = None
        columns = ", ".join(quote(f.name) for f in self._schema)
        self._merge_sql = (
            f"INSERT INTO {quote(target.name)} ({columns}) SELECT {columns} "
            f"FROM {quote(self._stage)} ON CONFLICT DO NOTHING"
        )

    def _chunks(self, batches: Iterator[pa.Table]) -> Iterator[pa.RecordBatch]:
        """The stream in the table's Arrow types, in chunks of at most COPY_CHUNK_ROWS."""
        for batch in batches:
            yield from to_pg_arrow(batch, self._target).to_batches(max_chunksize=COPY_CHUNK_ROWS)

    def write_stream(self, batches: Iterator[pa.Table]) -> int:
        """COPY the stream; returns the rows inserted. Chunks outside the range the table
        already holds go straight into the target (one streaming COPY per run of them); for
        a chunk inside it, the table's keys in the chunk's time range are read back and only
        the missing rows are COPYed; in merge mode every chunk goes to the staging table."""
        failure: list[BaseException] = []
        conn = self._sink.connection
        with (
            Prefetch(self._chunks(batches), depth=8, name="histetl-pg-convert") as ready,
            conn.cursor() as cur,
            self._sink.guarded() as guard,
        ):
            self._guard = guard
            route = "direct"  # the operation under way, for the error message
            try:
                chunks = self._checked(ready, failure)
                first = next(chunks, None)
                if first is None:
                    return 0
                occupied = None if self.merge else self._occupied(cur, first)
                time_column = self._target.time_column

                def route_of(chunk: pa.RecordBatch) -> str:
                    if self.merge:
                        return "stage"
                    return "keyed" if _overlaps(chunk, time_column, occupied) else "direct"

                inserted = 0
                stream = itertools.chain([first], chunks)
                for route, run in itertools.groupby(stream, key=route_of):
                    if route == "direct":
                        inserted += self._copy(cur, self._target.name, run)
                    elif route == "keyed":
                        inserted += self._copy_missing(cur, run)
                    else:
                        inserted += self._merge(cur, run)
                return inserted
            except Exception as exc:
                if failure:
                    raise failure[0] from None
                if route != "stage" and getattr(exc, "sqlstate", None) == _UNIQUE_VIOLATION:
                    self._sink.rollback()
                    raise MergeRequired from None
                what = "merge failed" if route == "stage" else "COPY failed"
                raise self._sink.error(what, exc) from None
            finally:
                self._guard = None

    def _copy(
        self, cur: Any, table: str, chunks: Iterable[pa.RecordBatch], temporary: bool = False
    ) -> int:
        reader = pa.RecordBatchReader.from_batches(self._schema, iter(chunks))
        return int(cur.adbc_ingest(table, reader, mode="append", temporary=temporary))

    def _copy_missing(self, cur: Any, chunks: Iterator[pa.RecordBatch]) -> int:
        """COPY the rows of `chunks` whose key the table does not hold yet, gathered into
        COPYs of up to MISSING_FLUSH_ROWS rows (a chunk whose rows are all there costs one
        index range read and sends nothing)."""
        inserted, pending, rows = 0, [], 0
        for chunk in chunks:
            missing = self._missing(cur, chunk)
            if missing.num_rows:
                pending.extend(missing.to_batches())
                rows += missing.num_rows
            if rows >= MISSING_FLUSH_ROWS:
                inserted += self._copy(cur, self._target.name, pending)
                pending, rows = [], 0
        if pending:
            inserted += self._copy(cur, self._target.name, pending)
        return inserted

    def _missing(self, cur: Any, chunk: pa.RecordBatch) -> pa.Table:
        """The chunk's rows whose key is not in the table (read back for the chunk's time
        range and, when the key has one, its integer ids)."""
        key = list(self._target.key)
        times = pc.min_max(chunk.column(key[0]).cast(pa.int64()))
        where = f"{quote(key[0])} BETWEEN {_micros('$1')} AND {_micros('$2')}"
        if len(key) > 1 and pa.types.is_integer(chunk.schema.field(key[1]).type):
            ids = pc.unique(chunk.column(key[1])).to_pylist()
            where += f" AND {quote(key[1])} IN ({', '.join(str(int(i)) for i in ids)})"
        cur.execute(
            f"SELECT {', '.join(quote(k) for k in key)} FROM {quote(self._target.name)} "
            f"WHERE {where}",
            (times["min"].as_py(), times["max"].as_py()),
        )
        held = cur.fetch_arrow_table()
        table = pa.Table.from_batches([chunk])
        if held.num_rows == 0:
            return table
        held = held.cast(table.select(key).schema)
        return table.join(held, keys=key, join_type="left anti", use_threads=False)

    def _merge(self, cur: Any, chunks: Iterator[pa.RecordBatch]) -> int:
        """Merge mode: everything through the staging table, then INSERT ... ON CONFLICT DO
        NOTHING (which also collapses rows repeated inside the file)."""
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {quote(self._stage)} "
            f"(LIKE {quote(self._target.name)}) ON COMMIT DROP"
        )
        self._copy(cur, self._stage, chunks, temporary=True)
        cur.execute(self._merge_sql)
        return int(cur.rowcount)

    def _checked(
        self, chunks: Iterator[pa.RecordBatch], failure: list[BaseException]
    ) -> Iterator[pa.RecordBatch]:
        """Marks progress for the stall watchdog, and keeps the producer's error (ADBC would
        only pass on its message)."""
        try:
            for chunk in chunks:
                if self._guard is not None:
                    self._guard.touch()  # progress: a long COPY is not a silent server
                yield chunk
        except BaseException as exc:
            failure.append(exc)
            raise

    def _occupied(self, cur: Any, first: pa.RecordBatch) -> tuple[int, int] | None:
        """The [lowest, highest] time (microseconds since the epoch, as the key stores it)
        of the rows the table already holds for the first chunk's symbols (or instrument ids)
        within the file's range; None when it holds none. One index probe per symbol."""
        time_column = self._target.time_column
        start, end = self._span
        if start is None or end is None:
            low, high = pc.min(first.column(time_column)).value, None
        else:
            low, high = start // 1000, -(-end // 1000)  # ns -> us, widened to whole us
        names = first.schema.names
        by = "symbol" if "symbol" in names and first.column("symbol").null_count == 0 else None
        by = by or ("instrument_id" if "instrument_id" in names else None)
        if by is None:
            return None  # nothing to narrow the probe by: the direct COPY decides
        keys = json.dumps(pc.unique(first.column(by)).to_pylist())
        column, table = quote(time_column), quote(self._target.name)
        bounds = f"{column} >= {_micros('$2')}"
        if high is not None:
            bounds += f" AND {column} < {_micros('$3')}"
        key = "k.key" if by == "symbol" else "k.key::bigint"
        cur.execute(
            "SELECT (extract(epoch FROM min(x.lo)) * 1e6)::bigint, "
            "(extract(epoch FROM max(x.hi)) * 1e6)::bigint "
            "FROM jsonb_array_elements_text($1::text::jsonb) AS k(key), LATERAL (SELECT "
            f"min({column}) AS lo, max({column}) AS hi FROM {table} "
            f"WHERE {quote(by)} = {key} AND {bounds}) AS x",
            (keys, low) if high is None else (keys, low, high),
        )
        low_found, high_found = cur.fetchall()[0]
        return None if low_found is None else (int(low_found), int(high_found))

    def commit(self, entry: LedgerEntry) -> LedgerEntry:
        placeholders = [f"${i + 1}" for i in range(len(LEDGER_COLUMNS))]
        self._sink.execute(ledger_upsert_sql(placeholders), ledger_params(entry))
        self._sink.commit()
        return entry  # the day locks kept other loaders out since the rows were counted

    def rollback(self) -> None:
        self._sink.rollback()


def _micros(param: str) -> str:
    """SQL for the timestamptz of a bigint parameter in microseconds since the epoch."""
    return f"(to_timestamp(0) + {param}::bigint * interval '1 microsecond')"


def _overlaps(chunk: pa.RecordBatch, time_column: str, occupied: tuple[int, int] | None) -> bool:
    """Whether the chunk's times (microseconds, as the key stores them) meet the occupied
    range."""
    if occupied is None:
        return False
    times = pc.min_max(chunk.column(time_column).cast(pa.int64()))
    return bool(times["max"].as_py() >= occupied[0] and times["min"].as_py() <= occupied[1])
