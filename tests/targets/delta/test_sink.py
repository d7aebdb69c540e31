"""The Delta Lake target, on a local lake and on S3 (a moto server the session starts): exact
values, idempotent reruns, overlaps counted as duplicates, concurrent writers, SIGKILL then
rerun, one-line storage errors (real CLI subprocesses)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable

from histetl.faults import FAULT_ENV
from histetl.synth import SynthSpec, write_dbn
from histetl.targets import read_ledger
from tests.conftest import SAMPLES
from tests.support.pgserver import free_port
from tests.support.s3server import SECRET_KEY, S3Server, start_s3
from tests.targets.duckdb.test_sink import HISTETL, replay, trades


@dataclasses.dataclass
class Lake:
    db: str  # the --db value
    root: str  # where its tables are: a folder, or s3://bucket/lake

    def fresh(self, n: int) -> Lake:
        """Another empty lake beside this one."""
        return Lake(f"{self.db}-{n}", f"{self.root}-{n}")

    def table(self, name: str = "trades") -> DeltaTable:
        return DeltaTable(f"{self.root}/{name}")

    def rows(self, name: str = "trades") -> pl.DataFrame:
        df = pl.scan_delta(f"{self.root}/{name}").collect()
        return df.sort(df.columns)


@pytest.fixture(params=["local", "s3"])
def lake(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    """A fresh lake on local disk, or in a fresh bucket of the session's S3 server (the AWS_*
    variables set for this test and the histetl processes it starts)."""
    if request.param == "local":
        return Lake(f"delta:///{tmp_path / 'lake'}", str(tmp_path / "lake"))
    server = request.getfixturevalue("s3_server")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    bucket = server.bucket()
    return Lake(f"delta+s3://{bucket}/lake", f"s3://{bucket}/lake")


def _lake_rows(lake: Path) -> pl.DataFrame:
    return Lake(f"delta:///{lake}", str(lake)).rows()


def _as_text(lake: Lake, con: duckdb.DuckDBPyConnection, table: str) -> tuple[list, list]:
    """Every value of a lake table and of the same DuckDB table, as text, rows sorted: the
    exact nanoseconds from the lake's X_ns columns (checked against its microsecond
    timestamps), DuckDB's from epoch_ns."""
    columns = con.sql(f"DESCRIBE {table}").fetchall()
    stored = lake.rows(table)
    ours, theirs = [], []
    for name, kind, *_ in columns:
        if kind.startswith("TIMESTAMP"):
            exact = stored[f"{name}_ns"]
            micros = stored[name].dt.epoch("us")
            assert micros.equals(exact // 1000), f"{table}.{name}: microseconds != ns // 1000"
            ours.append(exact.cast(pl.String))
            theirs.append(f'CAST(epoch_ns("{name}") AS VARCHAR)')
        else:
            ours.append(pl.Series([None if v is None else str(v) for v in stored[name]]))
            theirs.append(f'CAST("{name}" AS VARCHAR)')
    mine = sorted(zip(*(s.to_list() for s in ours), strict=True), key=repr)
    ref = sorted(con.sql(f"SELECT {', '.join(theirs)} FROM {table}").fetchall(), key=repr)
    return mine, ref


def test_replay_into_delta_stores_every_value_of_every_schema_exactly_as_duckdb(
    lake: Lake, tmp_path: Path
) -> None:
    """Polars scan_delta reads back every value exactly, nanoseconds included (every sample
    schema, and synthetic trades over two days)."""
    samples = sorted((SAMPLES / "GLBX.MDP3").glob("*.dbn.zst"))
    if not samples:
        pytest.skip(f"no samples at {SAMPLES}")
    paths = [*samples, *trades(tmp_path)]
    subprocess.run(replay(f"duckdb:///{tmp_path / 'h.duckdb'}", paths, tmp_path), check=True)
    subprocess.run(replay(lake.db, paths, tmp_path), check=True)
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        tables = [t for (t,) in con.sql("SHOW TABLES").fetchall() if t != "histetl_ledger"]
        assert len(tables) >= 10
        for table in tables:
            mine, ref = _as_text(lake, con, table)
            assert mine == ref, table
            assert mine, table


def test_replay_into_delta_when_run_twice_changes_nothing(lake: Lake, tmp_path: Path) -> None:
    paths = trades(tmp_path)
    subprocess.run(replay(lake.db, paths, tmp_path), check=True)
    first = lake.rows()
    version = lake.table().version()
    report = tmp_path / "report.json"
    subprocess.run([*replay(lake.db, paths, tmp_path), "--report", str(report)], check=True)
    assert [f["status"] for f in json.loads(report.read_text())["files"]] == ["skipped"] * 2
    assert lake.table().version() == version
    assert lake.rows().equals(first)
    assert first.height == 7000


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


@pytest.mark.parametrize("command", ["replay", "lake optimize", "lake vacuum"])
def test_delta_command_when_deltalake_is_not_installed_says_how_to_install_it(
    tmp_path: Path, command: str
) -> None:
    inputs = [str(trades(tmp_path)[0])] if command == "replay" else []
    no_lake = "import sys; sys.modules['deltalake'] = None; from histetl.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", no_lake, *command.split(), *inputs, "--db", "delta:///lake"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --db: Delta Lake targets need the deltalake package, which is not installed",
        "  hint: install the lake extra: pip install 'histetl[lake]'",
    ]
    assert not (tmp_path / "lake").exists()


def test_replay_into_delta_when_a_file_repeats_its_records_stores_each_once_and_counts_repeats(
    tmp_path: Path,
) -> None:
    plain = trades(tmp_path)[0]
    data = plain.read_bytes()
    assert data[:3] == b"DBN"
    head = 8 + int.from_bytes(data[4:8], "little")
    doubled = tmp_path / "doubled.dbn"
    doubled.write_bytes(data[:head] + data[head:] + data[head:])
    report = tmp_path / "report.json"
    cmd = replay(f"delta:///{tmp_path / 'lake'}", [doubled], tmp_path)
    subprocess.run([*cmd, "--report", str(report)], check=True)
    rows = _lake_rows(tmp_path / "lake")
    (file,) = json.loads(report.read_text())["files"]
    assert file["records"] == 2 * rows.height
    assert (file["loaded"], file["duplicates"]) == (rows.height, rows.height)
    assert rows.select("ts_event_ns", "instrument_id", "sequence").is_unique().all()


def test_replay_into_delta_when_files_overlap_counts_the_overlap_as_duplicates(
    tmp_path: Path,
) -> None:
    plain = trades(tmp_path)[0]  # 2000 trades, 48 bytes each
    data = plain.read_bytes()
    head = 8 + int.from_bytes(data[4:8], "little")
    assert len(data) - head == 2000 * 48
    first_half = tmp_path / "half.dbn"
    first_half.write_bytes(data[: head + 1000 * 48])
    lake = f"delta:///{tmp_path / 'lake'}"
    report = tmp_path / "report.json"
    subprocess.run(replay(lake, [first_half], tmp_path), check=True)
    subprocess.run([*replay(lake, [plain], tmp_path), "--report", str(report)], check=True)
    (file,) = json.loads(report.read_text())["files"]
    assert (file["records"], file["loaded"], file["duplicates"]) == (2000, 1000, 1000)
    rows = _lake_rows(tmp_path / "lake")
    assert rows.height == 2000
    assert rows.select("ts_event_ns", "instrument_id", "sequence").is_unique().all()


def _small_files(tmp_path: Path, n: int) -> list[Path]:
    """n trade files on one day (every commit reads and writes the same partition), plus one
    that repeats the first half of the first file."""
    paths = []
    for seed in range(n):
        path = tmp_path / f"s{seed}.dbn"
        write_dbn(SynthSpec(schema="trades", records=3000, seed=100 + seed), path)
        paths.append(path)
    data = paths[0].read_bytes()
    head = 8 + int.from_bytes(data[4:8], "little")
    half = tmp_path / "s0-half.dbn"
    half.write_bytes(data[: head + 1500 * 48])
    return [*paths, half]


def _clean_load(paths: list[Path], tmp_path: Path) -> pl.DataFrame:
    clean = tmp_path / "clean"
    subprocess.run(replay(f"delta:///{clean}", paths, tmp_path), check=True)
    return _lake_rows(clean)


def _two_writers_at_once(
    lake: Lake, paths: list[Path], tmp_path: Path
) -> tuple[int, list[dict[str, Any]]]:
    """Two processes replay the files at once, one in reverse order; returns how many commit
    conflicts they met and retried (a commit since a writer's duplicate check, counted again,
    is only printed), and their run reports."""
    reports = [tmp_path / f"writer-{i}.json" for i in range(2)]
    writers = [
        subprocess.Popen(
            [
                *HISTETL,
                "-v",
                *replay(lake.db, order, tmp_path)[len(HISTETL) + 1 :],
                "--report",
                str(report),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for order, report in zip((paths, paths[::-1]), reports, strict=True)
    ]
    logs = [w.communicate(timeout=300)[1] for w in writers]
    assert [w.returncode for w in writers] == [0, 0], logs
    assert "Traceback" not in "".join(logs)
    conflicts = sum(log.count("Delta commit conflict") for log in logs)
    recounts = sum(log.count("another writer committed since the check") for log in logs)
    print(f"{conflicts} commit conflicts, {recounts} recounts")
    return conflicts, [json.loads(r.read_text()) for r in reports]


def test_two_writers_replaying_the_same_files_at_once_equal_one_clean_load(
    lake: Lake, tmp_path: Path
) -> None:
    """Same and overlapping files, all on one day: the writers' commits conflict and are
    retried (rounds on fresh lakes until one met a conflict, at most 3), and every round ends
    equal to one clean load, each file once in the ledger with counts that add up."""
    paths = _small_files(tmp_path, 8)
    expected = _clean_load(paths, tmp_path)
    conflicts = 0
    for round_ in range(3):
        if round_:
            lake = lake.fresh(round_)
        met, reports = _two_writers_at_once(lake, paths, tmp_path)
        conflicts += met
        assert lake.rows().equals(expected)
        # what the two runs report as loaded is what the lake holds: no row counted twice
        assert sum(r["totals"]["loaded"] for r in reports) == expected.height
        entries = read_ledger(lake.db)
        assert sorted(e.path for e in entries) == sorted(map(str, paths))
        assert sum(e.loaded for e in entries) == expected.height
        assert sum(e.loaded + e.duplicates for e in entries) == sum(e.records for e in entries)
        if conflicts:
            break
    assert conflicts > 0


@pytest.fixture(scope="module")
def clean_trades(tmp_path_factory: pytest.TempPathFactory) -> pl.DataFrame:
    """The same seeded trades() files, loaded once into a fresh local lake: what every
    crash-then-rerun below must equal (the rows hold no path)."""
    folder = tmp_path_factory.mktemp("clean-trades")
    return _clean_load(trades(folder), folder)


@pytest.mark.parametrize(
    "point", ["after_batch:1000", "after_batch:4000", "before_commit", "after_commit"]
)
def test_sigkill_at_any_point_then_rerun_equals_one_clean_load(
    lake: Lake, tmp_path: Path, point: str, clean_trades: pl.DataFrame
) -> None:
    paths = trades(tmp_path)
    command = replay(lake.db, paths, tmp_path)
    crashed = subprocess.run(
        command, env={**os.environ, FAULT_ENV: point}, capture_output=True, text=True, check=False
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = subprocess.run(command, capture_output=True, text=True, check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert lake.rows().equals(clean_trades)
    entries = read_ledger(lake.db)
    assert sorted(e.path for e in entries) == sorted(map(str, paths))
    assert [(e.loaded, e.duplicates) for e in sorted(entries, key=lambda e: e.path)] == [
        (2000, 0),
        (5000, 0),
    ]


def test_a_file_with_nothing_new_is_recorded_and_skipped_on_rerun(
    lake: Lake, tmp_path: Path
) -> None:
    """A file whose every record is already stored, and a file without records, still commit
    their ledger record (a commit without data), so a rerun skips them."""
    plain = trades(tmp_path)[0]
    data = plain.read_bytes()
    head = 8 + int.from_bytes(data[4:8], "little")
    half, empty = tmp_path / "half.dbn", tmp_path / "empty.dbn"
    half.write_bytes(data[: head + 1000 * 48])
    empty.write_bytes(data[:head])
    subprocess.run(replay(lake.db, [plain], tmp_path), check=True)
    report = tmp_path / "report.json"
    for status in ("loaded", "skipped"):
        command = [*replay(lake.db, [half, empty], tmp_path), "--report", str(report)]
        subprocess.run(command, check=True)
        files = json.loads(report.read_text())["files"]
        assert [f["status"] for f in files] == [status, status]
    by_path = {e.path: e for e in read_ledger(lake.db)}
    assert (by_path[str(half)].loaded, by_path[str(half)].duplicates) == (0, 1000)
    assert by_path[str(empty)].records == 0
    assert lake.rows().height == 2000


def _s3_failure(tmp_path: Path, env: dict[str, str], db: str) -> list[str]:
    """The stderr lines of a replay into `db` that must fail: exit 1 or 2, no traceback, no
    secret, well within the subprocess timeout (timeouts on every storage request)."""
    paths = trades(tmp_path)[:1]
    result = subprocess.run(
        replay(db, paths, tmp_path),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode in (1, 2), result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET_KEY not in result.stderr + result.stdout
    return [line for line in result.stderr.splitlines() if line.startswith(("error", "  hint"))]


def test_s3_lake_when_the_bucket_does_not_exist_is_one_line(
    s3_server: S3Server, tmp_path: Path
) -> None:
    lines = _s3_failure(tmp_path, s3_server.env(), "delta+s3://no-such-bucket/lake")
    assert lines == [
        "error: delta+s3://no-such-bucket/lake: the bucket does not exist",
        f"  hint: create it on {s3_server.endpoint}, or fix the bucket name",
    ]


def test_s3_lake_when_credentials_are_refused_is_one_line_without_the_secret(
    tmp_path: Path,
) -> None:
    server = start_s3(auth=True)  # knows no access key: denies every request
    try:
        lines = _s3_failure(tmp_path, server.env(), "delta+s3://bucket/lake")
    finally:
        server.stop()
    assert lines == [
        f"error: delta+s3://bucket/lake: access denied by {server.endpoint}",
        "  hint: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN)",
    ]


def test_s3_lake_when_the_endpoint_is_unreachable_fails_fast_in_one_line(
    s3_server: S3Server, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    lines = _s3_failure(tmp_path, {**s3_server.env(), "AWS_ENDPOINT_URL": closed}, "delta+s3://b/l")
    assert lines == [
        f"error: delta+s3://b/l: cannot reach {closed}",
        "  hint: check AWS_ENDPOINT_URL and the network; rerun: loaded files are skipped",
    ]


def test_s3_lake_with_credentials_in_the_uri_refuses_them_without_showing_the_secret(
    s3_server: S3Server, tmp_path: Path
) -> None:
    lines = _s3_failure(tmp_path, s3_server.env(), f"delta+s3://key:{SECRET_KEY}@bucket/lake")
    assert lines == [
        "error: --db: credentials in the URL s3://key:***@bucket/lake",
        "  hint: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead",
    ]
