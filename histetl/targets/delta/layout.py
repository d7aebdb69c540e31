"""The layout of a histetl lake, shared by its load (`sink.py`), its reader (`read.py`), its
window replacement (`replace.py`) and its maintenance (`lake.py`): where the lake is, the
partition column, the tables' Arrow schema and key, and the commit-hook settings that keep the
commit files (they hold the ledger)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import PostCommitHookProperties

from histetl import objstore
from histetl.targets.base import TableTarget, local_path
from histetl.targets.postgres.schema import pg_arrow_schema, to_pg_arrow

PARTITION = "date"
# Checkpoints as usual, but never the clean-up of expired commit files: they hold the ledger
# (the table property for every writer; the hook option for tables made without it).
NO_LOG_CLEANUP = {"delta.enableExpiredLogCleanup": "false"}
KEEP_LOG = PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


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


def lake_key(target: TableTarget) -> list[str]:
    """The primary key in the lake's columns (a timestamp by its exact X_ns)."""
    schema = pg_arrow_schema(target)
    keys = []
    for col in target.key:
        keys.append(col + "_ns" if f"{col}_ns" in schema.names else col)
    return keys
