"""histetl.pipeline.workers: the per-file task in a pool of spawned processes, the reports in
input order, DuckDB refused (one writer), a worker that dies is one clear LoadError."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from histetl.errors import ConfigError, LoadError
from histetl.options import ReplayOptions
from histetl.pipeline.workers import run_in_pool
from histetl.synth import SynthSpec, write_dbn
from tests.pipeline.tasks import dies, slow_first
from tests.targets.conftest import pg_uri
from tests.targets.postgres.test_sink import HISTETL, load, query

__all__ = ["pg_uri"]  # a fixture, imported to be registered here


def test_workers_load_the_same_rows_as_one_process(pg_uri: str, tmp_path: Path) -> None:
    paths = []
    for day in (11, 12, 13):
        path = tmp_path / f"w{day}.dbn"
        write_dbn(
            SynthSpec(
                schema="trades",
                records=2000,
                days=1,
                seed=day,
                start=SynthSpec.start.replace(day=day),
            ),
            path,
        )
        paths.append(path)
    report = load(pg_uri, paths, tmp_path, workers=2)
    assert [Path(f.path).name for f in report.files] == ["w11.dbn", "w12.dbn", "w13.dbn"]
    assert [f.status for f in report.files] == ["loaded"] * 3
    assert query(pg_uri, "SELECT count(*) FROM trades") == [(6000,)]
    rerun = load(pg_uri, paths, tmp_path, workers=2)
    assert rerun.totals["skipped"] == 6000


def test_workers_with_duckdb_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=10, seed=1), path)
    result = subprocess.run(
        [
            *HISTETL,
            "replay",
            str(path),
            str(path),
            "--workers",
            "2",
            "--db",
            f"duckdb:///{tmp_path / 'x.duckdb'}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "DuckDB allows one writing process" in result.stderr


def test_reports_come_in_input_order_whatever_order_files_finish_in(tmp_path: Path) -> None:
    # validate-only: DuckDB is fine, nothing is written
    options = ReplayOptions(db=f"duckdb:///{tmp_path / 'h.duckdb'}", validate_only=True, workers=2)
    seen: list[str] = []
    paths = [f"file{i}" for i in range(4)]

    report = run_in_pool(slow_first, options, "run-1", paths, on_file=lambda f: seen.append(f.path))

    assert [f.path for f in report.files] == paths
    assert seen[-1] == "file0"  # on_file as files finish
    assert sorted(seen) == paths
    assert len({f.seconds for f in report.files}) == 2  # two worker processes
    assert os.getpid() not in {f.seconds for f in report.files}
    assert (report.run_id, report.mode) == ("run-1", "validate-only")
    assert [f.status for f in report.files] == ["validated"] * 4
    assert report.finished_at is not None
    assert not (tmp_path / "h.duckdb").exists()


def test_a_worker_that_dies_is_one_load_error_saying_to_rerun() -> None:
    options = ReplayOptions(db="postgresql://u@nowhere/db", workers=2)
    with pytest.raises(LoadError) as caught:
        run_in_pool(dies, options, "run-1", ["a", "b"])
    assert caught.value.message == (
        "--workers: a worker process died (killed, or out of memory?)\n"
        "  hint: rerun: files loaded are skipped, the others load again"
    )


def test_duckdb_is_refused_before_any_worker_starts(tmp_path: Path) -> None:
    options = ReplayOptions(db=f"duckdb:///{tmp_path / 'h.duckdb'}", workers=2)
    with pytest.raises(ConfigError) as caught:
        run_in_pool(dies, options, "run-1", ["a"])
    assert caught.value.message == (
        "--workers: DuckDB allows one writing process per database file\n"
        "  hint: use --workers 1 with DuckDB, or a PostgreSQL/TimescaleDB target"
    )
