"""`histetl resample` into a Delta lake, on a local lake and on S3 (the session's moto server):
the derived bars read back through `query` and `verify` exactly as the same resample into
DuckDB; one commit per window; a rerun changes nothing; a late source file corrects its
windows; two resamples at once equal one, and so does a SIGKILLed one rerun."""

from __future__ import annotations

import datetime as dt
import os
import signal
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from histetl.read.resample import ResampleOptions, resample
from histetl.synth import SynthSpec, record_dtype, write_dbn
from histetl.targets.delta.ledger import LEDGER_KEY
from tests.read.test_query import DAYS, START, histetl, load
from tests.targets.delta import test_sink
from tests.targets.delta.test_sink import HISTETL, Lake

lake = test_sink.lake  # a fresh lake per test: local, or in a bucket of the S3 server
INTERVALS = ("5m", "7m")  # 7m: windows of 1442 minutes, across the lake's day partitions
LATE = ("2023-12-13T10:00", "2023-12-13T14:00")  # the late file's bars


@pytest.fixture(scope="module")
def minute_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Sparse 1-minute bars of ES.c.0 and NQ.c.0 (`full`), and the same bars split into the
    `early` file and the `late` one (its bars in LATE), with the same header."""
    root = tmp_path_factory.mktemp("lake-resample")
    paths = {name: root / f"{name}.dbn" for name in ("full", "early", "late")}
    spec = SynthSpec("ohlcv-1m", 5000, symbols=("ES.c.0", "NQ.c.0"), start=START, days=DAYS)
    write_dbn(spec, paths["full"])
    raw = paths["full"].read_bytes()
    header = 8 + struct.unpack_from("<I", raw, 4)[0]
    bars = np.frombuffer(raw, dtype=record_dtype("ohlcv-1m"), offset=header)
    start, end = (_ns(t) for t in LATE)
    late = (bars["ts_event"] >= start) & (bars["ts_event"] < end)
    assert 0 < late.sum() < len(bars) // 10
    paths["early"].write_bytes(raw[:header] + bars[~late].tobytes())
    paths["late"].write_bytes(raw[:header] + bars[late].tobytes())
    return paths


@pytest.fixture(scope="module")
def duck(minute_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    """The reference: DuckDB loaded with the full file and resampled once to each interval."""
    root = tmp_path_factory.mktemp("duck-resample")
    uri = f"duckdb:///{root / 'db.duckdb'}"
    load(uri, [minute_files["full"]], root / "quarantine")
    for interval in INTERVALS:
        assert resample(ResampleOptions(db=uri, interval=interval)).bars > 0
    return uri


def _ns(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()) * 10**9


def _stdout(*args: str) -> str:
    result = histetl(*args)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stdout


def _csv(db: str, interval: str) -> str:
    return _stdout("query", "--db", db, "--schema", f"ohlcv-{interval}", "--format", "csv")


def _windows(db: str, interval: str) -> list[tuple[str, int, int]]:
    """(path, records, loaded) of the derived table's ledger rows: one per window."""
    from histetl.read.database import Database
    from histetl.sqltext import literal

    with Database.open(db) as database:
        return sorted(
            database.rows(
                "SELECT path, records, loaded FROM histetl_ledger "
                f"WHERE target_table = {literal('ohlcv_' + interval)}"
            )
        )


@pytest.mark.parametrize(
    ("lake", "interval"), [("local", "5m"), ("local", "7m"), ("s3", "7m")], indirect=["lake"]
)
def test_resample_into_a_lake_then_a_late_file_reads_back_as_the_same_resample_into_duckdb(
    lake: Lake, duck: str, minute_files: dict[str, Path], tmp_path: Path, interval: str
) -> None:
    quarantine = tmp_path / "quarantine"
    load(lake.db, [minute_files["early"]], quarantine)
    first = resample(ResampleOptions(db=lake.db, interval=interval))
    assert first.windows >= DAYS
    assert first.replaced == 0
    assert _csv(lake.db, interval) != _csv(duck, interval)  # without the late bars

    load(lake.db, [minute_files["late"]], quarantine)
    again = resample(ResampleOptions(db=lake.db, interval=interval, start=LATE[0], end=LATE[1]))

    assert again.windows == 1
    assert 0 < again.replaced < again.bars  # the window's bars, now with the late ones
    assert _csv(lake.db, interval) == _csv(duck, interval)  # byte for byte
    assert _windows(lake.db, interval) == _windows(duck, interval)
    table = f"ohlcv-{interval}"
    on_lake = histetl("verify", "--db", lake.db, "--table", table)
    on_duck = histetl("verify", "--db", duck, "--table", table)
    assert on_lake.exit_code == on_duck.exit_code  # 1: the sparse bars have gaps
    assert on_lake.stdout.splitlines()[:-1] == on_duck.stdout.splitlines()[:-1]
    assert f"PASS  ledger       ohlcv_{interval}" in on_lake.stdout
    assert "resample:ohlcv_1m@" in _stdout("status", "--db", lake.db)


@pytest.mark.parametrize("lake", ["local"], indirect=True)
def test_resample_into_a_lake_commits_once_per_window_and_a_rerun_changes_nothing(
    lake: Lake, minute_files: dict[str, Path], tmp_path: Path
) -> None:
    load(lake.db, [minute_files["full"]], tmp_path / "quarantine")
    first = resample(ResampleOptions(db=lake.db, interval="5m"))
    rows, version = lake.rows("ohlcv_5m"), lake.table("ohlcv_5m").version()

    again = resample(ResampleOptions(db=lake.db, interval="5m"))

    assert lake.rows("ohlcv_5m").equals(rows)
    assert (again.windows, again.bars, again.replaced) == (first.windows, first.bars, first.bars)
    commits = lake.table("ohlcv_5m").history(again.windows + 1)
    assert lake.table("ohlcv_5m").version() == version + again.windows
    assert all(LEDGER_KEY in c for c in commits[: again.windows])  # each: bars and ledger row
    assert len(_windows(lake.db, "5m")) == again.windows  # a window's row replaced, not added


def test_two_resamples_into_a_lake_at_once_equal_one(
    duck: str, minute_files: dict[str, Path], tmp_path: Path
) -> None:
    db = f"delta:///{tmp_path / 'lake'}"
    load(db, [minute_files["full"]], tmp_path / "quarantine")
    command = [*HISTETL, "-v", "resample", "--db", db, "--interval", "5m", "--interval", "7m"]
    runs = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    logs = [run.communicate(timeout=300)[1] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], logs
    assert "Traceback" not in "".join(logs)
    print(sum(log.count("Delta commit conflict") for log in logs), "commit conflicts retried")
    for interval in INTERVALS:
        assert _csv(db, interval) == _csv(duck, interval)
        assert _windows(db, interval) == _windows(duck, interval)


def test_resample_into_a_lake_killed_midway_then_rerun_equals_one(
    duck: str, minute_files: dict[str, Path], tmp_path: Path
) -> None:
    db = f"delta:///{tmp_path / 'lake'}"
    load(db, [minute_files["full"]], tmp_path / "quarantine")
    log = tmp_path / "lake" / "ohlcv_5m" / "_delta_log"
    command = [*HISTETL, "-q", "resample", "--db", db, "--interval", "5m", "--interval", "7m"]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while run.poll() is None and len(list(log.glob("*.json"))) < 3:  # create, then 2 windows
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait(timeout=60) == -signal.SIGKILL, "finished before the kill"
    assert not (tmp_path / "lake" / "ohlcv_7m").exists() or _csv(db, "7m") != _csv(duck, "7m")

    again = histetl("resample", "--db", db, "--interval", "5m", "--interval", "7m")

    assert again.exit_code == 0, again.output
    for interval in INTERVALS:
        assert _csv(db, interval) == _csv(duck, interval)
        assert _windows(db, interval) == _windows(duck, interval)
