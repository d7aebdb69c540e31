"""The loaders a user would write instead of histetl, into the same PostgreSQL table.

Both read the file with databento's own `DBNStore.to_df(price_type="decimal",
map_symbols=True)` in chunks (bounded memory), and write exactly histetl's table layout
(`histetl.targets.postgres.schema`: `ts timestamptz` truncated to the microsecond plus
`ts_ns bigint`, `numeric(19,9)` prices, `record_hash` from the record bytes), so the loaded
rows are identical and checked against histetl's. They are trades-only, as hand-written loaders are.

* `copy_load`: one psycopg `COPY ... FROM STDIN` per file, `write_row` per record.
* `rowwise_load`: a pydantic model per record, `executemany` of an `INSERT ... ON CONFLICT DO
  NOTHING` in batches of 1000, committed per batch.

Column preparation is vectorized (pandas/numpy) in both, which is generous to them.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel

from histetl.decode import record_hash
from histetl.schemas import table_spec
from histetl.targets import TableTarget
from histetl.targets.postgres.schema import create_table_sql, pg_columns

CHUNK = 100_000
ROWWISE_BATCH = 1000
SPEC = table_spec("trades")
TARGET = TableTarget(SPEC.table, SPEC.arrow_schema, SPEC.key, SPEC.index_ts)
COLUMNS = tuple(c.name for c in pg_columns(TARGET.schema, TARGET.key))


def create_table(conn: psycopg.Connection[Any]) -> None:
    """The same DDL histetl runs (primary key and symbol/time index included)."""
    for statement in create_table_sql(TARGET):
        conn.execute(statement)  # type: ignore[arg-type]
    conn.commit()


def trade_rows(path: Path) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of rows in the table's column order, decoded by databento."""
    from databento import DBNStore

    warnings.filterwarnings("ignore", category=Warning, module="databento")
    # two stores: the iterators of one store share its reader
    frames = DBNStore.from_file(path).to_df(price_type="decimal", map_symbols=True, count=CHUNK)
    records = DBNStore.from_file(path).to_ndarray(count=CHUNK)  # raw bytes, for record_hash
    for frame, raw in zip(frames, records, strict=True):
        recv, event = frame.index, frame["ts_event"]
        columns = [
            recv.floor("us").to_pydatetime().tolist(),
            recv.asi8.tolist(),
            event.dt.floor("us").dt.to_pydatetime().tolist(),
            event.astype("int64").tolist(),
            *(frame[c].tolist() for c in ("rtype", "publisher_id", "instrument_id")),
            *(frame[c].tolist() for c in ("action", "side", "depth", "price", "size", "flags")),
            *(frame[c].tolist() for c in ("ts_in_delta", "sequence")),
            record_hash(raw).tolist(),
            frame["symbol"].tolist(),
        ]
        yield list(zip(*columns, strict=True))


def copy_load(path: Path, uri: str) -> int:
    names = ", ".join(COLUMNS)
    rows = 0
    with psycopg.connect(uri) as conn:
        create_table(conn)
        with conn.cursor() as cur, cur.copy(f"COPY trades ({names}) FROM STDIN") as copy:  # type: ignore[arg-type]
            for chunk in trade_rows(path):
                for row in chunk:
                    copy.write_row(row)
                rows += len(chunk)
        conn.commit()
    return rows


class Trade(BaseModel):
    """What a hand-written loader validates each record with."""

    ts_recv: dt.datetime
    ts_recv_ns: int
    ts_event: dt.datetime
    ts_event_ns: int
    rtype: int
    publisher_id: int
    instrument_id: int
    action: str
    side: str
    depth: int
    price: Decimal | None
    size: int
    flags: int
    ts_in_delta: int
    sequence: int
    record_hash: int
    symbol: str | None


def rowwise_load(path: Path, uri: str) -> int:
    names = ", ".join(COLUMNS)
    values = ", ".join(["%s"] * len(COLUMNS))
    sql = f"INSERT INTO trades ({names}) VALUES ({values}) ON CONFLICT DO NOTHING"
    rows = 0
    with psycopg.connect(uri) as conn:
        create_table(conn)
        for chunk in trade_rows(path):
            for start in range(0, len(chunk), ROWWISE_BATCH):
                batch = [
                    Trade(**dict(zip(COLUMNS, row, strict=True)))
                    for row in chunk[start : start + ROWWISE_BATCH]
                ]
                with conn.cursor() as cur:
                    cur.executemany(sql, [tuple(m.model_dump().values()) for m in batch])  # type: ignore[arg-type]
                conn.commit()
                rows += len(batch)
    return rows
