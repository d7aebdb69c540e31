"""Loads: histetl into DuckDB and PostgreSQL, and the hand-written PostgreSQL loaders."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.conftest import ROWS, ROWWISE_ROWS
from benchmarks.data import DataSet
from benchmarks.loaders import copy_load, rowwise_load
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer

# DBNStore.from_file leaves its file handle to the garbage collector: not ours to fix.
pytestmark = [
    pytest.mark.benchmark(group="load"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO:pytest.PytestUnraisableExceptionWarning"
    ),
]


def _histetl(db: str, path: Path, quarantine: Path) -> int:
    report = Replayer(ReplayOptions(db=db, quarantine_dir=quarantine)).run([path])
    return report.totals["loaded"]


def test_histetl_duckdb(benchmark, trades: Path, tmp_path: Path) -> None:
    def setup() -> tuple[tuple[str, Path, Path], dict[str, object]]:
        return (f"duckdb:///{tmp_path / uuid.uuid4().hex}.duckdb", trades, tmp_path), {}

    assert benchmark.pedantic(_histetl, setup=setup, rounds=3) == ROWS


def test_histetl_postgres(
    benchmark, trades: Path, tmp_path: Path, new_pg_uri: Callable[[], str]
) -> None:
    def setup() -> tuple[tuple[str, Path, Path], dict[str, object]]:
        return (new_pg_uri(), trades, tmp_path), {}

    assert benchmark.pedantic(_histetl, setup=setup, rounds=3) == ROWS


def test_psycopg_copy_loader(benchmark, trades: Path, new_pg_uri: Callable[[], str]) -> None:
    def setup() -> tuple[tuple[Path, str], dict[str, object]]:
        return (trades, new_pg_uri()), {}

    assert benchmark.pedantic(copy_load, setup=setup, rounds=3) == ROWS


def test_rowwise_loader(benchmark, data: DataSet, new_pg_uri: Callable[[], str]) -> None:
    """pydantic per record + executemany ON CONFLICT in batches of 1000, on fewer rows."""
    path = data.trades(ROWWISE_ROWS)

    def setup() -> tuple[tuple[Path, str], dict[str, object]]:
        return (path, new_pg_uri()), {}

    assert benchmark.pedantic(rowwise_load, setup=setup, rounds=3) == ROWWISE_ROWS
