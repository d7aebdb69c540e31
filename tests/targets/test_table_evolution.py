"""A table made by an older histetl (tcbbo before it kept `action` and `ts_in_delta`) gets the
columns added since, and a load into it keeps every value."""

from __future__ import annotations

from pathlib import Path

import duckdb
import psycopg
import pyarrow as pa

from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.schemas import table_spec
from histetl.synth import SynthSpec, write_dbn
from histetl.targets import TableTarget
from histetl.targets.duckdb.sink import create_table_sql as duckdb_table_sql
from histetl.targets.postgres.schema import create_table_sql as pg_table_sql

ADDED = ("action", "ts_in_delta")


def old_tcbbo() -> TableTarget:
    spec = table_spec("tcbbo")
    schema = pa.schema([f for f in spec.arrow_schema if f.name not in ADDED])
    return TableTarget(spec.table, schema, spec.key, spec.index_ts)


def tcbbo_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.tcbbo.dbn"
    write_dbn(SynthSpec(schema="tcbbo", records=300, seed=3), path)
    return path


def load(db: str, path: Path, tmp_path: Path) -> tuple[str, int]:
    report = Replayer(ReplayOptions(db=db, quarantine_dir=tmp_path / "q")).run([path])
    (file,) = report.files
    return file.status, file.loaded


def test_duckdb_table_without_new_columns_gets_them_and_loads(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    with duckdb.connect(str(db)) as conn:
        conn.execute(duckdb_table_sql(old_tcbbo()))
    path = tcbbo_file(tmp_path)
    assert load(f"duckdb:///{db}", path, tmp_path) == ("loaded", 300)
    with duckdb.connect(str(db)) as conn:
        row = conn.execute(
            "SELECT count(*), count(action), count(ts_in_delta) FROM tcbbo"
        ).fetchone()
    assert row == (300, 300, 300)


def test_postgres_table_without_new_columns_gets_them_and_loads(
    tmp_path: Path, pg_uri: str
) -> None:
    with psycopg.connect(pg_uri) as conn:
        for statement in pg_table_sql(old_tcbbo()):
            conn.execute(statement)
    path = tcbbo_file(tmp_path)
    assert load(pg_uri, path, tmp_path) == ("loaded", 300)
    with psycopg.connect(pg_uri) as conn:
        row = conn.execute(
            "SELECT count(*), count(action), count(ts_in_delta) FROM tcbbo"
        ).fetchone()
    assert row == (300, 300, 300)
