"""SIGINT, SIGTERM and SIGKILL against real `histetl replay` processes: the file in progress is
rolled back, no other file starts, the exit code says which signal, workers die with their
parent, and a rerun converges to one clean load."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import psycopg
import pytest

from histetl.interrupt import CANCEL, Cancel, Interrupted, stop_on_signals
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.synth import Defects, SynthSpec, write_dbn
from histetl.targets import read_ledger
from tests.pipeline.test_run import gateway, gw, raw_files, trades, write_job
from tests.support.fake_gateway import FakeGateway, Scripted
from tests.support.pgserver import PgServer, fresh_schema

__all__ = ["gateway", "gw", "trades"]  # fixtures, imported to be registered here

HISTETL = [sys.executable, "-m", "histetl.cli"]
RECORDS = 100_000  # with --batch-size 500: 200 batches a file, a second or more of work
DEFECTS = 20  # zero-size trades per file: each file writes a quarantine file as it goes
FILES = 4
SIGNALS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("signals")
    paths = []
    for i in range(FILES):
        path = folder / f"f{i}.dbn{'.zst' if i % 2 else ''}"
        spec = SynthSpec(
            schema="trades", records=RECORDS, seed=10 + i, defects=Defects(zero_size=DEFECTS)
        )
        write_dbn(spec, path)
        paths.append(path)
    return paths


@pytest.fixture
def pg_uri(pg_server: PgServer) -> Iterator[str]:
    with fresh_schema(pg_server.uri) as (uri, _schema):
        yield uri


@pytest.fixture(params=["duckdb", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'signals.duckdb'}"
    return str(request.getfixturevalue("pg_uri"))


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """Whatever a test found, no replay or worker outlives it (each runs in its own group)."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)


def start(tmp_path: Path, db: str, files: list[Path], *extra: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*HISTETL, "replay", *map(str, files), "--db", db, "--batch-size", "500", *extra],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job has
    )
    _STARTED.append(process)
    return process


def wait_for_loaded(process: subprocess.Popen[str]) -> list[str]:
    """Read stderr up to the first file's 'loaded' log line; the next file is then in
    progress. Returns the lines read."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if " loaded, " in line:
            return lines
    raise AssertionError(f"no file finished: {''.join(lines)}")


def finish(process: subprocess.Popen[str], timeout: float = 15) -> tuple[int, str, float]:
    started = time.monotonic()
    out, err = process.communicate(timeout=timeout)
    return process.returncode, (out or "") + (err or ""), time.monotonic() - started


def count_rows(db: str, table: str) -> int:
    if db.startswith("duckdb"):
        with duckdb.connect(db.removeprefix("duckdb:///"), read_only=True) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    else:
        with psycopg.connect(db) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def loaded_files(db: str) -> list[str]:
    return sorted(Path(e.path).name for e in read_ledger(db))


def assert_one_clean_load(tmp_path: Path, db: str, files: list[Path], *extra: str) -> None:
    rerun = subprocess.run(
        [*HISTETL, "replay", *map(str, files), "--db", db, *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert loaded_files(db) == sorted(f.name for f in files)
    assert count_rows(db, "trades") == len(files) * (RECORDS - DEFECTS)
    assert [e.loaded for e in read_ledger(db)] == [RECORDS - DEFECTS] * len(files)


def litter(tmp_path: Path) -> list[str]:
    """Quarantine output of files that did not finish (partial or complete)."""
    return sorted(p.name for p in (tmp_path / "quarantine").rglob("*") if p.is_file())


@pytest.mark.parametrize(("sig", "code"), SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_replay_when_signalled_rolls_back_the_file_in_progress_and_starts_no_other(
    tmp_path: Path, db: str, files: list[Path], sig: int, code: int
) -> None:
    process = start(tmp_path, db, files)
    wait_for_loaded(process)
    process.send_signal(sig)
    returncode, output, seconds = finish(process)
    assert returncode == code, output
    assert seconds < 5
    assert "Traceback" not in output
    message = [line for line in output.splitlines() if "interrupted by" in line]
    assert message == [
        f"error: interrupted by {signal.Signals(sig).name}: 1 of {FILES} files loaded "
        f"({RECORDS - DEFECTS:,} rows), {FILES - 1} not done (nothing of them is loaded); "
        "rerun the same command to continue (what is loaded is skipped)"
    ]
    assert loaded_files(db) == [files[0].name]
    assert count_rows(db, "trades") == RECORDS - DEFECTS  # nothing of the file in progress
    assert len(litter(tmp_path)) == 1
    assert "f0.dbn" in litter(tmp_path)[0]  # the finished file's quarantine, nothing else
    assert_one_clean_load(tmp_path, db, files)


def test_validate_only_when_signalled_exits_130_and_writes_nothing(
    tmp_path: Path, files: list[Path]
) -> None:
    process = subprocess.Popen(
        [*HISTETL, "replay", *map(str, files), "--validate-only", "--batch-size", "200"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _STARTED.append(process)
    assert process.stderr is not None
    for line in process.stderr:
        if "f0.dbn" in line:
            break
    process.send_signal(signal.SIGINT)
    returncode, output, seconds = finish(process)
    assert returncode == 130, output
    assert seconds < 5
    assert f"1 of {FILES} files validated" in output
    assert not (tmp_path / "histetl.duckdb").exists()
    assert len(litter(tmp_path)) == 1  # the finished file's quarantine, nothing else


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie is dead, only not yet reaped


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (running := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return running


def test_workers_die_with_their_parent_and_a_rerun_converges(
    tmp_path: Path, pg_uri: str, files: list[Path]
) -> None:
    process = start(tmp_path, pg_uri, files, "--workers", "2")
    wait_for_loaded(process)  # a worker has moved on to the next file
    workers = children(process.pid)
    assert len(workers) >= 2
    process.kill()
    process.wait(timeout=10)
    assert wait_gone(workers, 5) == []
    assert_one_clean_load(tmp_path, pg_uri, files, "--workers", "2")


@pytest.mark.parametrize(
    ("sig", "code", "group"),
    [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, False), (signal.SIGINT, 130, True)],
    ids=["SIGINT-parent", "SIGTERM-parent", "SIGINT-group"],
)
def test_workers_when_signalled_stop_promptly_and_load_only_finished_files(
    tmp_path: Path, pg_uri: str, files: list[Path], sig: int, code: int, group: bool
) -> None:
    process = start(tmp_path, pg_uri, files, "--workers", "2")
    lines = wait_for_loaded(process)
    workers = children(process.pid)
    if group:  # Ctrl-C on a terminal: the parent and the workers get it
        os.killpg(process.pid, sig)
    else:  # to the parent only, as `kill PID` or a main-PID stop
        process.send_signal(sig)
    returncode, output, seconds = finish(process)
    assert returncode == code, output
    assert seconds < 5
    assert "Traceback" not in output
    assert wait_gone(workers, 2) == []
    finished = sorted(
        Path(line.split()[1].rstrip(":")).name
        for line in "".join(lines).splitlines() + output.splitlines()
        if " loaded, " in line
    )
    assert loaded_files(pg_uri) == finished
    assert count_rows(pg_uri, "trades") == len(finished) * (RECORDS - DEFECTS)
    assert len(finished) < FILES
    assert_one_clean_load(tmp_path, pg_uri, files, "--workers", "2")


@pytest.mark.parametrize(("sig", "code"), SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_run_when_signalled_mid_download_removes_it_and_loads_nothing(
    gw: FakeGateway, tmp_path: Path, sig: int, code: int
) -> None:
    # the first chunk downloads; the second one's response is held back by the gateway
    gw.script("timeseries.get_range", Scripted(), Scripted(delay=10))
    job = write_job(tmp_path, gw)
    process = subprocess.Popen(
        [*HISTETL, "run", str(job)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _STARTED.append(process)
    assert process.stderr is not None
    for line in process.stderr:
        if "downloaded " in line:
            break
    while len(gw.requests_for("timeseries.get_range")) < 2:  # the second one is waiting
        time.sleep(0.02)
    process.send_signal(sig)
    returncode, output, seconds = finish(process)
    assert returncode == code, output
    assert seconds < 5
    assert (
        f"error: interrupted by {signal.Signals(sig).name}: 1 of 3 chunks downloaded (no "
        "partial download is kept), nothing loaded yet; rerun the same command" in output
    )
    assert len(raw_files(tmp_path)) == 1  # the complete chunk only
    assert [p.name for p in (tmp_path / "raw").rglob("*") if p.name.endswith(".part")] == []
    target = tmp_path / "h.duckdb"
    assert not target.exists() or loaded_files(f"duckdb:///{target}") == []
    rerun = subprocess.run(
        [*HISTETL, "run", str(job)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert rerun.returncode == 0, rerun.stderr
    assert len(raw_files(tmp_path)) == 3


def test_replay_when_signalled_while_waiting_for_a_duckdb_lock_stops_at_once(
    tmp_path: Path, files: list[Path]
) -> None:
    target = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(target)!r}); "
            "print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        replayer = Replayer(ReplayOptions(db=f"duckdb:///{target}"))
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        with pytest.raises(Interrupted, match="nothing loaded") as info, stop_on_signals():
            replayer.run(files[:1])  # would wait 60 s for the lock
        assert time.monotonic() - started < 3
        assert info.value.exit_code == 143
    finally:
        holder.kill()
        holder.communicate()


_STUCK = """
import sys, time
from histetl.interrupt import stop_on_signals
with stop_on_signals(grace_s=float(sys.argv[1])):
    print("ready", flush=True)
    time.sleep(60)  # work that never checks the flag (a call that does not return)
"""


@pytest.mark.parametrize("second_signal", [False, True], ids=["deadline", "second-signal"])
def test_a_stop_that_hangs_ends_the_process_after_the_grace_period_or_a_second_signal(
    second_signal: bool,
) -> None:
    grace = "30" if second_signal else "0.5"
    process = subprocess.Popen(
        [sys.executable, "-c", _STUCK, grace],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _STARTED.append(process)
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGTERM)
    if second_signal:
        time.sleep(0.3)  # the first one is handled (it only sets the flag)
        process.send_signal(signal.SIGINT)
    returncode, output, seconds = finish(process)
    assert returncode == (130 if second_signal else 143)
    assert seconds < 3
    why = "second signal" if second_signal else "still stopping after 0.5s"
    assert f"interrupted by {'SIGINT' if second_signal else 'SIGTERM'}: {why}; exiting now" in (
        output
    )


# -- the flag itself -------------------------------------------------------------------------


def test_cancel_sleep_returns_early_with_interrupted() -> None:
    cancel = Cancel()
    cancel.request(signal.SIGTERM)
    started = time.monotonic()
    with pytest.raises(Interrupted) as info:
        cancel.sleep(30)
    assert time.monotonic() - started < 1
    assert info.value.exit_code == 143


def test_cancel_raising_turns_a_signal_into_interrupted_at_once() -> None:
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: CANCEL.request(signum))
    try:
        started = time.monotonic()
        with pytest.raises(Interrupted) as info, CANCEL.raising():  # noqa: PT012
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(5)  # interrupted: the handler raises here
        assert info.value.signum == signal.SIGUSR1
        assert time.monotonic() - started < 1
        with pytest.raises(Interrupted):  # once requested, no new work starts
            CANCEL.check()
    finally:
        signal.signal(signal.SIGUSR1, previous)
        CANCEL.reset()
