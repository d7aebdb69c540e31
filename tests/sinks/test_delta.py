"""The Delta Lake target on a local lake: exact values, idempotent reruns, overlaps counted as
duplicates (real CLI subprocesses)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb
import polars as pl
from deltalake import DeltaTable

from tests.sinks.test_duckdb import replay, trades


def _lake_rows(lake: Path) -> pl.DataFrame:
    df = pl.from_arrow(DeltaTable(str(lake / "trades")).to_pyarrow_table())
    assert isinstance(df, pl.DataFrame)
    return df.sort("ts_event_ns", "instrument_id", "sequence")


def test_replay_into_delta_when_run_twice_equals_duckdb_exactly_and_skips(tmp_path: Path) -> None:
    paths = trades(tmp_path)
    subprocess.run(replay(f"duckdb:///{tmp_path / 'h.duckdb'}", paths, tmp_path), check=True)
    subprocess.run(replay(f"delta:///{tmp_path / 'lake'}", paths, tmp_path), check=True)
    first = _lake_rows(tmp_path / "lake")
    version = DeltaTable(str(tmp_path / "lake" / "trades")).version()
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        ref = con.sql(
            "SELECT epoch_ns(ts_event) AS ts_event_ns, epoch_ns(ts_recv) AS ts_recv_ns, "
            "CAST(price AS VARCHAR) AS price, instrument_id, sequence, size FROM trades "
            "ORDER BY 1, instrument_id, sequence"
        ).pl()
    assert first.height == ref.height == 7000
    assert first["ts_event_ns"].to_list() == ref["ts_event_ns"].to_list()
    assert first["ts_recv_ns"].to_list() == ref["ts_recv_ns"].to_list()
    assert [str(p) for p in first["price"].to_list()] == ref["price"].to_list()
    subprocess.run(replay(f"delta:///{tmp_path / 'lake'}", paths, tmp_path), check=True)
    assert DeltaTable(str(tmp_path / "lake" / "trades")).version() == version
    assert _lake_rows(tmp_path / "lake").equals(first)


def test_replay_into_delta_when_some_files_already_loaded_stores_each_record_once(
    tmp_path: Path,
) -> None:
    paths = trades(tmp_path)
    lake = f"delta:///{tmp_path / 'lake'}"
    subprocess.run(replay(lake, paths[:1], tmp_path), check=True)
    subprocess.run(replay(lake, paths, tmp_path), check=True)
    rows = _lake_rows(tmp_path / "lake")
    assert rows.height == 7000
    assert rows.select("ts_event_ns", "instrument_id", "sequence").is_unique().all()
