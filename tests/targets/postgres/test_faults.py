"""Database faults against real PostgreSQL servers: a server that stops answering, a server
that restarts mid-run, a deadlock with another session. Faults that need a server of their own
(SIGSTOP, stop/start) use a private one, so the session's server is never disturbed."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from histetl.synth import SynthSpec, write_dbn
from tests.support.pgserver import PgServer, start_postgres, with_search_path

HISTETL = [sys.executable, "-m", "histetl.cli"]
RECORDS = 20_000


@pytest.fixture
def private_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    server = start_postgres(tmp_path_factory.mktemp("pg"), private=True)
    yield server
    server.stop()


def trade_files(folder: Path, count: int, records: int = RECORDS) -> list[Path]:
    paths = []
    for seed in range(count):
        path = folder / f"t{seed}.dbn"
        spec = SynthSpec(
            schema="trades",
            records=records,
            seed=seed,
            start=SynthSpec.start.replace(day=1 + 2 * seed),
        )
        write_dbn(spec, path)
        paths.append(path)
    return paths


def replay(uri: str, paths: list[Path], tmp_path: Path, *extra: str) -> list[str]:
    return [
        *HISTETL,
        "replay",
        *map(str, paths),
        "--db",
        uri,
        "--batch-size",
        "2000",
        "--quarantine-dir",
        str(tmp_path / "q"),
        "--report",
        str(tmp_path / "report.json"),
        *extra,
    ]


def rows(uri: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(uri, connect_timeout=5) as conn:
        return conn.execute(sql).fetchall()


def wait_for_ledger(uri: str, n: int, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if rows(uri, "SELECT count(*) FROM histetl_ledger")[0][0] >= n:
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no {n} ledger rows after {timeout} s")


@contextlib.contextmanager
def running(command: list[str]) -> Iterator[subprocess.Popen[str]]:
    """The command started, and killed at the end if it is still running."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def pause_until_exit(
    server: PgServer, proc: subprocess.Popen[str], timeout: float
) -> tuple[str, float]:
    """SIGSTOP the server until `proc` ends: its stderr, and the seconds it took."""
    server.pause()
    paused = time.monotonic()
    try:
        _out, err = proc.communicate(timeout=timeout)
    finally:
        server.resume()
    return err, time.monotonic() - paused


def assert_one_clean_load(uri: str, files: int) -> None:
    assert rows(uri, "SELECT count(*), count(DISTINCT (ts_recv_ns, record_hash)) FROM trades") == [
        (files * RECORDS, files * RECORDS)
    ]
    assert rows(uri, "SELECT count(*), sum(loaded) FROM histetl_ledger") == [
        (files, files * RECORDS)
    ]


def test_replay_when_server_paused_before_connect_ends_within_the_timeout(
    private_pg: PgServer, tmp_path: Path
) -> None:
    paths = trade_files(tmp_path, 1, 100)
    uri = private_pg.uri + "?connect_timeout=2"
    private_pg.pause()
    try:
        started = time.monotonic()
        result = subprocess.run(
            replay(uri, paths, tmp_path, "--db-retries", "2", "--db-retry-max-wait", "0.2"),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        private_pg.resume()
    assert result.returncode == 1, result.stderr
    assert elapsed < 20
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: PostgreSQL at 127.0.0.1:{private_pg.port} (user postgres, database postgres): "
        "cannot connect: timeout expired"
    ], result.stderr
    assert "Traceback" not in result.stderr
    rerun = subprocess.run(
        replay(uri, paths, tmp_path), capture_output=True, text=True, check=False
    )
    assert rerun.returncode == 0, rerun.stderr


def test_replay_when_server_stops_answering_mid_run_fails_cleanly_then_rerun_converges(
    private_pg: PgServer, tmp_path: Path
) -> None:
    """SIGSTOP of the postmaster and its backends: the kernel still accepts and ACKs, so only
    histetl's own watchdog (--db-timeout) ends the wait."""
    paths = trade_files(tmp_path, 4)
    uri = private_pg.uri + "?connect_timeout=2"
    command = replay(
        uri, paths, tmp_path, "--db-timeout", "3", "--db-retries", "2", "--db-retry-max-wait", "0.2"
    )
    with running(command) as proc:
        wait_for_ledger(private_pg.uri, 1, proc)
        err, elapsed = pause_until_exit(private_pg, proc, timeout=120)
    assert proc.returncode == 1, err
    assert elapsed < 90, err
    assert "Traceback" not in err
    assert "no answer from the server for 3 s" in err or "timeout expired" in err, err
    report = json.loads((tmp_path / "report.json").read_text())
    failed = [f for f in report["files"] if f["status"] == "failed"]
    assert failed, report
    assert all(f["loaded"] == 0 for f in failed)
    loaded = rows(private_pg.uri, "SELECT count(*) FROM histetl_ledger")[0][0]
    assert loaded == len(paths) - len(failed)
    assert rows(private_pg.uri, "SELECT count(*) FROM trades")[0][0] == loaded * RECORDS
    rerun = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert_one_clean_load(private_pg.uri, len(paths))


@pytest.mark.parametrize("lock_timeout", ["300", "0"], ids=["default-lock-timeout", "no-limit"])
def test_replay_when_server_stops_answering_during_a_lock_wait_fails_after_the_db_timeout(
    private_pg: PgServer, tmp_path: Path, lock_timeout: str
) -> None:
    """A silent lock wait is normal (another loader holds the lock): only a server that does
    not answer a fresh handshake either is a stopped one. Waiting for --lock-timeout (300 s)
    plus --db-timeout first was the CI hang of 2026-12-04, when the SIGSTOP above landed
    during a lock statement; with --lock-timeout 0 the wait was not watched at all."""
    (path,) = trade_files(tmp_path, 1, 100)
    load_seed(private_pg.uri, tmp_path)
    uri = private_pg.uri + "?connect_timeout=2"
    command = replay(
        uri,
        [path],
        tmp_path,
        "--db-timeout",
        "3",
        "--db-retries",
        "1",
        "--lock-timeout",
        lock_timeout,
    )
    with psycopg.connect(private_pg.uri, autocommit=False) as other:  # holds the table's lock
        other.execute("SELECT pg_advisory_xact_lock(hashtextextended('histetl:load:trades', 0))")
        with running(command) as proc:
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            deadline = time.monotonic() + 60
            while rows(private_pg.uri, waiting) != [(1,)]:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(4)  # longer than --db-timeout: a live server's silent lock wait goes on
            assert proc.poll() is None, proc.communicate()
            err, elapsed = pause_until_exit(private_pg, proc, timeout=60)
    assert proc.returncode == 1, err
    assert elapsed < 20, err
    assert "no answer from the server for 3 s (--db-timeout)" in err, err
    assert "Traceback" not in err
    rerun = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert rerun.returncode == 0, rerun.stderr


@pytest.mark.parametrize(
    ("retries", "down_s"),
    [("8", 3.0), ("3", 5.0)],
    ids=["retries-outlast-the-outage", "outage-outlasts-the-retries"],
)
def test_replay_when_server_restarts_mid_run_retries_or_fails_cleanly_and_rerun_converges(
    private_pg: PgServer, tmp_path: Path, retries: str, down_s: float
) -> None:
    """Down for longer than the retries once ended in an AttributeError traceback (the
    reconnect failed and the next attempt used a missing connection)."""
    paths = trade_files(tmp_path, 4)
    uri = private_pg.uri + "?connect_timeout=3"
    command = replay(uri, paths, tmp_path, "--db-retries", retries, "--db-retry-max-wait", "1")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_ledger(private_pg.uri, 1, proc)
        private_pg.stop_server()
        time.sleep(down_s)
        private_pg.start_server()
        _out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "Traceback" not in err, err
    assert "AttributeError" not in err, err
    assert "retrying" in err
    report = json.loads((tmp_path / "report.json").read_text())
    failed = [f for f in report["files"] if f["status"] == "failed"]
    assert proc.returncode == (1 if failed else 0), err
    if retries == "8":
        assert not failed, err
    assert all(f["loaded"] == 0 for f in failed)
    loaded = len(paths) - len(failed)
    assert report["totals"]["loaded"] == loaded * RECORDS
    assert rows(private_pg.uri, "SELECT count(*), sum(loaded) FROM histetl_ledger") == [
        (loaded, loaded * RECORDS)
    ]
    rerun = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert_one_clean_load(private_pg.uri, len(paths))


def test_replay_when_deadlocked_by_another_session_retries_and_loads_exactly(
    pg_server: PgServer, pg_uri: str, tmp_path: Path
) -> None:
    """A session that holds the file's last key and then waits for its first one deadlocks
    with the COPY; PostgreSQL aborts the loader (its deadlock_timeout is the shorter), and the
    file is retried instead of failing."""
    (path,) = trade_files(tmp_path, 1, 5000)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # the same file in another schema: the source of the exact rows the other session writes
    with psycopg.connect(pg_server.uri, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA IF NOT EXISTS deadlock_src")
        admin.execute("DROP TABLE IF EXISTS deadlock_src.trades")
    src_uri = with_search_path(pg_server.uri, "deadlock_src")
    try:
        _deadlock_and_check(pg_uri, src_uri, path, scratch, tmp_path)
    finally:
        with psycopg.connect(pg_server.uri, autocommit=True) as admin:
            admin.execute("DROP SCHEMA IF EXISTS deadlock_src CASCADE")


def _deadlock_and_check(
    pg_uri: str, src_uri: str, path: Path, scratch: Path, tmp_path: Path
) -> None:
    prepared = subprocess.run(
        replay(src_uri, [path], scratch), capture_output=True, text=True, check=False
    )
    assert prepared.returncode == 0, prepared.stderr
    target_schema = rows(pg_uri, "SELECT current_schema()")[0][0]
    # the target table as histetl makes it, from a file of another day
    load_seed(pg_uri, tmp_path)
    order = "ORDER BY ts_recv_ns {}, record_hash LIMIT 1"
    last = f"INSERT INTO trades SELECT * FROM deadlock_src.trades {order.format('DESC')}"
    first = f"INSERT INTO trades SELECT * FROM deadlock_src.trades {order.format('ASC')}"
    other = psycopg.connect(pg_uri)
    other.execute("SET deadlock_timeout = '30s'")
    other.execute(last)
    proc = subprocess.Popen(
        replay(pg_uri, [path], tmp_path, "--db-retry-max-wait", "0.5"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not rows(
            pg_uri,
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            f"AND query LIKE 'COPY%' AND pid <> {other.info.backend_pid}",
        ):
            assert time.monotonic() < deadline, "the loader never waited for the other session"
            time.sleep(0.05)
        done = threading.Event()

        def insert_first() -> None:
            other.execute(first)  # waits for the loader: a deadlock, the loader is aborted
            other.commit()
            done.set()

        thread = threading.Thread(target=insert_first)
        thread.start()
        _out, err = proc.communicate(timeout=120)
        thread.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        other.close()
    assert done.is_set()
    assert proc.returncode == 0, err
    assert "deadlock detected" in err, err
    assert "retrying" in err, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["totals"]["loaded"], report["totals"]["duplicates"]) == (4998, 2)
    assert rows(pg_uri, "SELECT count(*) FROM trades") == [(5010,)]
    assert target_schema != "deadlock_src"


def load_seed(uri: str, tmp_path: Path) -> None:
    """10 trades loaded first, so the table and its indexes exist before a lock is held."""
    seed = tmp_path / "seed"
    seed.mkdir()
    write_dbn(SynthSpec(schema="trades", records=10, seed=99), seed / "seed.dbn")
    made = subprocess.run(
        replay(uri, [seed / "seed.dbn"], seed), capture_output=True, text=True, check=False
    )
    assert made.returncode == 0, made.stderr


def test_replay_when_another_loader_holds_the_table_lock_fails_at_lock_timeout(
    pg_uri: str, tmp_path: Path
) -> None:
    (path,) = trade_files(tmp_path, 1, 100)
    load_seed(pg_uri, tmp_path)
    with psycopg.connect(pg_uri) as other:  # holds the table's load lock exclusively
        other.execute("SELECT pg_advisory_xact_lock(hashtextextended('histetl:load:trades', 0))")
        started = time.monotonic()
        result = subprocess.run(
            replay(pg_uri, [path], tmp_path, "--lock-timeout", "1"),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert elapsed < 30
    assert "canceling statement due to lock timeout" in result.stderr
    assert "another loader held the lock longer than --lock-timeout" in result.stderr
    assert "attempt" not in result.stderr
    rerun = subprocess.run(replay(pg_uri, [path], tmp_path), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr


@pytest.mark.parametrize("range_rule", ["error", "disabled"])
def test_day_locks_only_while_rows_outside_the_file_range_are_rejected(
    pg_uri: str, tmp_path: Path, range_rule: str
) -> None:
    """Another loader holds a day far from this file's days. While index_ts_in_file_range
    rejects rows outside the file's range, the file's own day locks let it load beside that
    loader; with the rule disabled its rows may fall on any day, so it needs the whole table
    and waits (here: fails at the lock timeout, then loads on a rerun)."""
    (path,) = trade_files(tmp_path, 1, 100)
    load_seed(pg_uri, tmp_path)
    extra: tuple[str, ...] = ("--lock-timeout", "1")
    if range_rule == "disabled":
        rules = tmp_path / "rules.yaml"
        rules.write_text("disable: [index_ts_in_file_range]\n")
        extra = (*extra, "--rules", str(rules))
    with psycopg.connect(pg_uri) as other:  # a loader of 1970-01-01 into the same table
        other.execute(
            "SELECT pg_advisory_xact_lock_shared(hashtextextended('histetl:load:trades', 0))"
        )
        other.execute("SELECT pg_advisory_xact_lock(hashtextextended('histetl:load:trades:0', 0))")
        result = subprocess.run(
            replay(pg_uri, [path], tmp_path, *extra),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    if range_rule == "error":
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 1, result.stderr
        assert "lock timeout" in result.stderr
        rerun = subprocess.run(
            replay(pg_uri, [path], tmp_path, *extra), capture_output=True, text=True
        )
        assert rerun.returncode == 0, rerun.stderr
    assert rows(pg_uri, "SELECT count(*) FROM trades") == [(110,)]
