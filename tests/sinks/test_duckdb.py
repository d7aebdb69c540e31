"""The DuckDB target: crash-safe like PostgreSQL, a lock wait that says what it waits for and
ends, and a bad path that is one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import adbc_driver_duckdb.dbapi as duckdb_dbapi
import duckdb
import pytest

from histetl.pipeline import FAULT_ENV
from histetl.synth import SynthSpec, write_dbn
from tests.reference import decode_with_symbols

HISTETL = [sys.executable, "-m", "histetl.cli"]


def trades(tmp_path: Path) -> list[Path]:
    paths = []
    for seed, records in ((1, 2000), (2, 5000)):
        path = tmp_path / f"t{seed}.dbn"
        spec = SynthSpec(
            schema="trades",
            records=records,
            seed=seed,
            start=SynthSpec.start.replace(day=13 + 2 * seed),
        )
        write_dbn(spec, path)
        paths.append(path)
    return paths


def replay(db: str, paths: list[Path], tmp_path: Path, *extra: str) -> list[str]:
    return [
        *HISTETL,
        "-q",
        "replay",
        *map(str, paths),
        "--db",
        db,
        "--batch-size",
        "1000",
        "--quarantine-dir",
        str(tmp_path / "q"),
        *extra,
    ]


@pytest.mark.parametrize(
    "point", ["after_batch:1000", "after_batch:4000", "before_commit", "after_commit"]
)
def test_sigkill_at_any_point_then_rerun_equals_one_clean_load(tmp_path: Path, point: str) -> None:
    paths = trades(tmp_path)
    db_path = tmp_path / "h.duckdb"
    command = replay(f"duckdb:///{db_path}", paths, tmp_path)
    crashed = subprocess.run(
        command, env={**os.environ, FAULT_ENV: point}, capture_output=True, text=True, check=False
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = subprocess.run(command, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    expected = set()
    for path in paths:
        decoded, _ = decode_with_symbols(path)
        expected |= set(
            zip(
                decoded.column("ts_recv").cast("int64").to_pylist(),
                decoded.column("record_hash").to_pylist(),
                strict=True,
            )
        )
    with duckdb.connect(str(db_path), read_only=True) as con:
        stored = con.execute("SELECT epoch_ns(ts_recv), record_hash FROM trades").fetchall()
        ledger = con.execute(
            "SELECT path, records, loaded FROM histetl_ledger ORDER BY path"
        ).fetchall()
    assert len(stored) == len(expected) == 7000
    assert set(stored) == expected
    assert [(Path(p).name, r, n) for p, r, n in ledger] == [
        ("t1.dbn", 2000, 2000),
        ("t2.dbn", 5000, 5000),
    ]


def test_replay_when_another_process_holds_the_file_says_so_then_fails_at_lock_timeout(
    tmp_path: Path,
) -> None:
    paths = trades(tmp_path)[:1]
    db_path = tmp_path / "h.duckdb"
    holder = duckdb_dbapi.connect(str(db_path))  # this test process holds the file's lock
    try:
        started = time.monotonic()
        result = subprocess.run(
            replay(f"duckdb:///{db_path}", paths, tmp_path, "--lock-timeout", "2"),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert result.returncode == 1, result.stderr
    assert 2 <= elapsed < 20
    pid = os.getpid()
    assert (
        f"waiting for {db_path}: another process (PID {pid}) holds its lock (another histetl "
        "loading into it?); waiting up to 2 s (--lock-timeout)"
    ) in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {db_path}: DuckDB database still locked by another process (PID {pid}) after 2 s"
    ], result.stderr
    assert "Traceback" not in result.stderr
    rerun = subprocess.run(replay(f"duckdb:///{db_path}", paths, tmp_path), capture_output=True)
    assert rerun.returncode == 0, rerun.stderr


def test_replay_when_duckdb_path_is_unusable_is_one_clear_line(tmp_path: Path) -> None:
    paths = trades(tmp_path)[:1]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = {
        f"duckdb:///{blocker}/sub/h.duckdb": "cannot create the folder for the DuckDB database",
        f"duckdb:///{tmp_path}": "the DuckDB database path is a directory",
    }
    for db, message in cases.items():
        result = subprocess.run(
            replay(db, paths, tmp_path), capture_output=True, text=True, check=False
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "hint:" in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 2  # the error and its hint


def test_replay_when_duckdb_folder_is_missing_creates_it(tmp_path: Path) -> None:
    paths = trades(tmp_path)[:1]
    db_path = tmp_path / "new" / "deeper" / "h.duckdb"
    result = subprocess.run(
        replay(f"duckdb:///{db_path}", paths, tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert db_path.is_file()


def test_replay_when_duckdb_file_is_not_a_database_is_one_clear_line(tmp_path: Path) -> None:
    paths = trades(tmp_path)[:1]
    db_path = tmp_path / "h.duckdb"
    db_path.write_bytes(b"this is not a DuckDB file" * 1000)
    result = subprocess.run(
        replay(f"duckdb:///{db_path}", paths, tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: {db_path}: cannot open DuckDB database:")
    assert "Traceback" not in result.stderr
