"""The DuckDB target: crash-safe like PostgreSQL, a lock wait that says what it waits for and
ends, and a bad path that is one clear line."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import adbc_driver_duckdb.dbapi as duckdb_dbapi
import duckdb
import pytest

from histetl.decode import DbnFile
from histetl.faults import FAULT_ENV
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer, expand_paths
from histetl.report import FileReport, RunReport
from histetl.synth import SynthSpec, write_dbn
from histetl.targets.duckdb import sink as duckdb_sink
from histetl.targets.duckdb.sink import DuckDBSink
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


def test_replay_when_a_commit_cannot_be_written_fails_that_file_alone_and_rerun_converges(
    tmp_path: Path,
) -> None:
    """A write error at COMMIT (here the file-size limit, as a full disk would) ends the
    transaction inside DuckDB while the driver still counts it as open: the next file's
    ledger read then failed with a ProgrammingError traceback ("No active transaction").
    Each failing file is one line; the others load; with room again a rerun equals one
    clean load."""
    paths = []
    for seed in range(4):
        path = tmp_path / f"t{seed}.dbn"
        day = SynthSpec.start.replace(day=1 + 2 * seed)
        write_dbn(SynthSpec(schema="trades", records=20_000, seed=seed, start=day), path)
        paths.append(path)
    db = f"duckdb:///{tmp_path / 'h.duckdb'}"
    limit = 2_500_000  # bytes: the WAL of some commits goes past it

    def capped() -> None:  # pragma: no cover - runs in the child
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    full = subprocess.run(
        [*replay(db, paths, tmp_path), "--report", str(tmp_path / "r.json")],
        capture_output=True, text=True, check=False, preexec_fn=capped,
    )  # fmt: skip
    assert "Traceback" not in full.stderr, full.stderr
    assert full.returncode == 1, full.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    status = {Path(f["path"]).name: (f["status"], f["loaded"]) for f in report["files"]}
    failed = [name for name, (state, _) in status.items() if state == "failed"]
    assert failed, status
    assert len(failed) < len(paths), status
    assert all(status[name][1] == 0 for name in failed)
    errors = [line for line in full.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == len(failed), full.stderr
    assert all("commit failed" in line and "File too large" in line for line in errors)
    rerun = subprocess.run(replay(db, paths, tmp_path), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _stored(tmp_path) == (80_000, 80_000)
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        ledger = con.execute("SELECT loaded, duplicates FROM histetl_ledger").fetchall()
    assert sorted(ledger) == [(20_000, 0)] * 4  # nothing of a failed file was kept


def _load(tmp_path: Path, paths: list[Path], **options: object) -> RunReport:
    opts = ReplayOptions(
        db=f"duckdb:///{tmp_path / 'h.duckdb'}",
        quarantine_dir=tmp_path / "q",
        batch_size=1000,
        **options,  # type: ignore[arg-type]
    )
    return Replayer(opts).run(expand_paths(paths))


def _stored(tmp_path: Path) -> tuple[int, int]:
    """(rows, distinct keys) of the trades table."""
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        row = con.execute(
            "SELECT count(*), count(DISTINCT (ts_recv, instrument_id, record_hash)) FROM trades"
        ).fetchone()
    assert row is not None
    return row


def _split(path: Path) -> tuple[bytes, bytes]:
    """A plain DBN file's header (prelude + metadata) and its records."""
    data = path.read_bytes()
    head = 8 + int.from_bytes(data[4:8], "little")
    return data[:head], data[head:]


def _doubled(path: Path, out: Path) -> Path:
    """The file with its records written twice (one header)."""
    header, records = _split(path)
    out.write_bytes(header + records + records)
    return out


# Merges of 700 rows (not a divisor of the 1000-row batches): repeats meet rows of earlier
# merges of the same (uncommitted) transaction; by default the whole file is one merge.
@pytest.mark.parametrize("row_group", [700, None])
def test_replay_when_a_file_repeats_its_records_stores_each_once_and_counts_repeats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row_group: int | None
) -> None:
    if row_group is not None:
        monkeypatch.setattr(duckdb_sink, "_ROW_GROUP", row_group)
        monkeypatch.setattr(duckdb_sink, "_MERGE_BYTES", 1)
    doubled = _doubled(trades(tmp_path)[0], tmp_path / "doubled.dbn")
    (file,) = _load(tmp_path, [doubled]).files
    assert (file.status, file.records, file.loaded, file.duplicates) == (
        "loaded",
        4000,
        2000,
        2000,
    )
    assert _stored(tmp_path) == (2000, 2000)


def test_replay_when_files_overlap_or_are_forced_counts_the_overlap_as_duplicates(
    tmp_path: Path,
) -> None:
    plain = trades(tmp_path)[0]  # 2000 trades, 48 bytes each
    header, records = _split(plain)
    half = tmp_path / "half.dbn"
    half.write_bytes(header + records[: 1000 * 48])
    assert _load(tmp_path, [half]).totals["loaded"] == 1000
    (file,) = _load(tmp_path, [plain]).files
    assert (file.records, file.loaded, file.duplicates) == (2000, 1000, 1000)
    (forced,) = _load(tmp_path, [plain], force=True).files
    assert (forced.records, forced.loaded, forced.duplicates) == (2000, 0, 2000)
    assert _stored(tmp_path) == (2000, 2000)


def test_load_caps_duckdb_memory_only_while_a_file_loads_and_spills_beyond_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a cap far below the file's rows in DuckDB (~100 MB uncommitted): the load completes
    monkeypatch.setattr(duckdb_sink, "_MEMORY_LIMIT", "64MB")
    path = tmp_path / "big.dbn"
    write_dbn(SynthSpec(schema="trades", records=1_000_000, seed=3), path)
    sink = DuckDBSink(f"duckdb:///{tmp_path / 'h.duckdb'}")
    try:
        default = _setting(sink, "memory_limit")
        replayer = Replayer(ReplayOptions(db=sink.display, quarantine_dir=tmp_path / "q"))
        seen: list[str] = []
        replayer.observer = _SettingWatch(sink, seen)
        report = replayer.process(path, sink)
        assert (report.status, report.loaded) == ("loaded", 1_000_000), report.error
        assert set(seen) == {"61.0 MiB"}  # DuckDB shows 64MB so
        assert _setting(sink, "memory_limit") == default != "61.0 MiB"
    finally:
        sink.close()
    assert _stored(tmp_path) == (1_000_000, 1_000_000)


class _SettingWatch:
    """Reads DuckDB's memory limit at every batch of a load."""

    def __init__(self, sink: DuckDBSink, seen: list[str]) -> None:
        self.sink, self.seen = sink, seen

    def file_started(self, report: FileReport) -> None:
        pass

    def batch(self, report: FileReport, spec: object, valid: object, invalid: object) -> None:
        with self.sink._conn.cursor() as cur:
            cur.execute("SELECT current_setting('memory_limit')")
            row = cur.fetchone()
        self.seen.append(str(row[0]) if row else "")

    def file_finished(self, report: FileReport) -> None:
        pass


def _setting(sink: DuckDBSink, name: str) -> str:
    with sink._conn.cursor() as cur:
        cur.execute("SELECT current_setting(?)", (name,))
        row = cur.fetchone()
    sink._conn.commit()
    return str(row[0])


def test_replay_into_a_table_with_the_old_primary_key_loads_without_the_cap(
    tmp_path: Path,
) -> None:
    paths = trades(tmp_path)
    with DbnFile(paths[0]) as dbn:
        spec = dbn.spec
    columns = ", ".join(f'"{f.name}" {duckdb_sink.duckdb_type(f.type)}' for f in spec.arrow_schema)
    key = ", ".join(f'"{c}"' for c in spec.key)
    with duckdb.connect(str(tmp_path / "h.duckdb")) as con:  # as histetl made it before
        con.execute(f"CREATE TABLE trades ({columns}, PRIMARY KEY ({key}))")
    first = _load(tmp_path, paths)
    assert first.totals["loaded"] == 7000
    doubled = _doubled(paths[0], tmp_path / "doubled.dbn")
    (file,) = _load(tmp_path, [doubled]).files
    assert (file.loaded, file.duplicates) == (0, 4000)
    assert _stored(tmp_path) == (7000, 7000)
