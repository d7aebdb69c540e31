"""Replacing a window of a Delta table's rows (`histetl resample`): ONE commit that removes the
rows whose time lies in [start, end) and adds the new ones, with the window's application
transaction and ledger record, as a file's load carries its own (`sink.py`).

The commit is a predicate overwrite (Delta's replaceWhere) on the `date` partitions the window
touches and the exact `X_ns` bound: only the data files of those days are read, and those
holding rows outside the window are rewritten with them kept. Like a file's commit it is made
on the table version the rows were counted at, without Delta's own retries: after another
writer's commit it fails, and the count and the commit are done again. New rows must lie in the
window (Delta refuses the commit otherwise)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import write_deltalake

from histetl.sqltext import quote
from histetl.targets.base import LedgerEntry, TableTarget
from histetl.targets.delta.commit import commit_retrying, ledger_commit
from histetl.targets.delta.layout import KEEP_LOG, PARTITION, lake_key, lake_schema, to_lake_arrow
from histetl.targets.postgres.schema import NS_SUFFIX

if TYPE_CHECKING:
    from histetl.targets.delta.sink import DeltaSink

_DAY_NS = 86_400 * 10**9
_EPOCH = dt.date(1970, 1, 1)


def replace_window(
    sink: DeltaSink,
    target: TableTarget,
    window: tuple[int, int],
    rows: pa.Table,
    entry: LedgerEntry,
) -> tuple[int, LedgerEntry | None]:
    """`Sink.replace_window` on a lake: (rows replaced, the record as stored), or (0, None)
    with nothing committed when the window holds no rows and gets none."""
    start, end = window
    exact = target.time_column + NS_SUFFIX  # the lake's exact nanoseconds
    first_day = _EPOCH + dt.timedelta(days=start // _DAY_NS)
    last_day = _EPOCH + dt.timedelta(days=(end - 1) // _DAY_NS)
    in_window = (pc.field(exact) >= start) & (pc.field(exact) < end)
    predicate = (
        f"{quote(PARTITION)} >= '{first_day.isoformat()}' AND "
        f"{quote(PARTITION)} <= '{last_day.isoformat()}' AND "
        f"{quote(exact)} >= {int(start)} AND {quote(exact)} < {int(end)}"
    )
    new = _first_per_key(to_lake_arrow(rows, target).cast(lake_schema(target)), target)

    def once() -> tuple[int, LedgerEntry | None]:
        dtable = sink.ensure_table(target)
        # the data files that may hold rows of the window (by partition and statistics)
        files = dtable.to_pyarrow_dataset(file_pruning_predicate=predicate)
        replaced = files.count_rows(filter=in_window)
        if not new.num_rows and not replaced:
            return 0, None
        stored = replace(entry, loaded=new.num_rows, duplicates=entry.records - new.num_rows)
        version = dtable.version() + 1  # the transaction's version: this commit's (ledger.py)
        write_deltalake(
            dtable,  # the version counted: a commit since makes this one fail (and retry)
            new,
            mode="overwrite",
            predicate=predicate,
            commit_properties=ledger_commit(stored, version),
            post_commithook_properties=KEEP_LOG,
        )
        return replaced, stored

    return commit_retrying(
        sink.table_uri(target.name), once, "run again: windows are replaced, not added"
    )


def _first_per_key(table: pa.Table, target: TableTarget) -> pa.Table:
    """The rows with the first of each primary key (a key repeated would be a duplicate row),
    in their order."""
    keys = lake_key(target)
    index = pl.from_arrow(table.select(keys))
    assert isinstance(index, pl.DataFrame)
    first = index.with_row_index().unique(subset=keys, keep="first", maintain_order=True)
    if first.height == table.num_rows:
        return table
    return table.take(first["index"].to_arrow())
