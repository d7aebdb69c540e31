from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from histetl.schemas import table_spec
from histetl.targets import TableTarget
from histetl.targets.postgres.schema import canonical_ddl, pg_columns, to_pg_arrow

ROOT = Path(__file__).resolve().parents[3]


def test_committed_table_migration_matches_the_code() -> None:
    committed = (ROOT / "sql" / "002_tables.sql").read_text()
    assert committed == canonical_ddl(), "sql/002_tables.sql is stale: run `just sql`"


def test_timestamps_split_into_timestamptz_and_exact_nanoseconds() -> None:
    spec = table_spec("trades")
    names = [c.name for c in pg_columns(spec.arrow_schema, spec.key)]
    assert names[:4] == ["ts_recv", "ts_recv_ns", "ts_event", "ts_event_ns"]


def test_to_pg_arrow_keeps_unsigned_values_above_int64() -> None:
    schema = pa.schema(
        [
            pa.field("ts", pa.timestamp("ns", "UTC"), nullable=False),
            pa.field("instrument_id", pa.uint32(), nullable=False),
            pa.field("volume", pa.uint64()),
        ]
    )
    target = TableTarget("t", schema, ("ts", "instrument_id"), "ts")
    batch = pa.table(
        {
            "ts": pa.array([1_700_000_000_123_456_789], pa.timestamp("ns", "UTC")),
            "instrument_id": pa.array([2**32 - 1], pa.uint32()),
            "volume": pa.array([2**64 - 2], pa.uint64()),
        }
    )
    out = to_pg_arrow(batch, target).to_pylist()[0]
    assert out["ts_ns"] == 1_700_000_000_123_456_789
    assert out["ts"].microsecond == 123_456
    assert out["instrument_id"] == 2**32 - 1
    assert int(out["volume"]) == 2**64 - 2
