"""`--cluster`: replay's per-file tasks on a real Dask cluster (a `dask scheduler` and `dask
worker` processes started here, or a LocalCluster of worker processes), into the session's
real PostgreSQL: the same rows as a local replay, idempotent reruns, dead workers, corrupt
files and paths a worker cannot see."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from histetl.config import validate_model
from histetl.errors import ConfigError
from histetl.jobs import JobFile
from histetl.options import ReplayOptions
from histetl.pipeline.cluster import WORKERS_TIMEOUT_S
from histetl.pipeline.replay import Replayer
from histetl.source.files import expand_paths
from histetl.synth import Defects, SynthSpec, write_dbn
from tests.pipeline.test_run import N_TRADES, gateway, gw, trades, write_job
from tests.support.fake_gateway import FakeGateway
from tests.support.pgserver import PgServer, fresh_schema

__all__ = ["gateway", "gw", "trades"]  # fixtures, imported to be registered here

pytestmark = pytest.mark.postgres

BIN = Path(sys.executable).parent
HISTETL = [sys.executable, "-m", "histetl.cli"]


class Dask:
    """A `dask scheduler` and its `dask worker` processes, stopped on close()."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.file = root / "scheduler.json"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []
        self.scheduler = self._spawn(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.file),
            ],
            "scheduler",
        )
        deadline = time.monotonic() + 60
        while not self.file.exists():
            assert self.scheduler.poll() is None, self._log("scheduler")
            assert time.monotonic() < deadline, "the scheduler did not start in 60 s"
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written whole, but give the writer its close
        self.address = json.loads(self.file.read_text())["address"]

    def worker(
        self,
        name: str,
        *,
        env: dict[str, str] | None = None,
        nanny: bool = True,
        wrap: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        args = ["worker", self.address, "--nthreads", "1", "--no-dashboard", "--host"]
        args += ["127.0.0.1", "--name", name, "--local-directory", str(self.root / name)]
        return self._spawn(args + ([] if nanny else ["--no-nanny"]), name, env, wrap)

    def wait_for(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=90)

    def _spawn(
        self,
        args: list[str],
        name: str,
        env: dict[str, str] | None = None,
        wrap: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        self.logs.append(log)
        proc = subprocess.Popen(
            [*(wrap or []), str(BIN / "dask"), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=self.root,
        )
        self.procs.append(proc)
        return proc

    def _log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dask]:
    """One scheduler and two plain `dask worker ADDR` processes for the whole module."""
    cluster = Dask(tmp_path_factory.mktemp("dask"))
    try:
        cluster.worker("w1")
        cluster.worker("w2")
        cluster.wait_for(2)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pg(pg_server: PgServer) -> Iterator[str]:
    with fresh_schema(pg_server.uri) as (uri, _schema):
        yield uri


def histetl(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HISTETL, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "HISTETL_CLUSTER"},
    )


def files(directory: Path, count: int, records: int = 3000) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        schema = "mbp-1" if i % 3 == 2 else "trades"
        defects = Defects(zero_size=3, exact_duplicates=2) if i % 2 else Defects()
        path = directory / f"{schema}-{i}.dbn.zst"
        write_dbn(SynthSpec(schema=schema, records=records, seed=40 + i, defects=defects), path)
        out.append(path)
    return out


def local_replay(paths: list[Path], uri: str, tmp: Path) -> dict[str, int]:
    report = Replayer(ReplayOptions(db=uri, quarantine_dir=tmp / "q-local")).run(paths)
    assert not report.failed
    return report.totals


def contents(uri: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every data table, sorted (and the ledger's counts per file)."""
    out: dict[str, list[tuple[object, ...]]] = {}
    with psycopg.connect(uri) as conn:
        for table in ("trades", "mbp_1"):
            exists = conn.execute(
                "SELECT to_regclass(current_schema() || '.' || %s)", (table,)
            ).fetchone()
            if exists and exists[0] is not None:
                rows = conn.execute(f"SELECT * FROM {table}").fetchall()  # type: ignore[arg-type]
                out[table] = sorted(rows, key=repr)
        ledger = conn.execute(
            "SELECT sha256, records, loaded, duplicates, quarantined FROM histetl_ledger"
        ).fetchall()
        out["ledger"] = sorted(ledger)
    return out


def ledger_rows(uri: str) -> int:
    """Rows in this schema's ledger (0 when no load ever created it)."""
    with psycopg.connect(uri) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = 'histetl_ledger'"
        ).fetchone()
        if not found or not found[0]:
            return 0
        count = conn.execute("SELECT count(*) FROM histetl_ledger").fetchone()
        return int(count[0]) if count else 0


def report_of(path: Path) -> dict[str, object]:
    return dict(json.loads(path.read_text()))


def test_replay_on_cluster_into_postgres_loads_what_a_local_replay_loads_and_rerun_loads_nothing(
    dask_cluster: Dask, pg: str, pg_server: PgServer, tmp_path: Path
) -> None:
    paths = files(tmp_path / "raw", 5)
    with fresh_schema(pg_server.uri) as (local_uri, _):
        expected_totals = local_replay(paths, local_uri, tmp_path)
        expected = contents(local_uri)
    first = histetl(
        "replay", "raw", "--db", pg, "--cluster", dask_cluster.address, "--report", "r1.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    report = report_of(tmp_path / "r1.json")
    assert report["totals"] == expected_totals
    assert expected_totals["quarantined"] == 6
    assert expected_totals["duplicates"] > 0
    # files in input order, whatever order they finished in on the workers
    assert [f["path"] for f in report["files"]] == [  # type: ignore[attr-defined]
        str(p) for p in expand_paths([tmp_path / "raw"])
    ]
    assert contents(pg) == expected

    again = histetl(
        "replay", "raw", "--db", pg, "--cluster", dask_cluster.address, "--report", "r2.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    totals = report_of(tmp_path / "r2.json")["totals"]
    assert totals == {**expected_totals, "records": 0, "loaded": 0, "duplicates": 0,
                      "quarantined": 0, "skipped": expected_totals["records"]}  # fmt: skip
    assert contents(pg) == expected


def test_replay_on_cluster_when_files_are_corrupt_fails_them_loads_the_rest_and_exits_1(
    dask_cluster: Dask, pg: str, tmp_path: Path
) -> None:
    good = files(tmp_path / "raw", 2)
    truncated = tmp_path / "raw" / "trades-truncated.dbn"
    write_dbn(SynthSpec(schema="trades", records=2000, seed=7), truncated)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) - 37])
    garbage = tmp_path / "raw" / "garbage.dbn"
    garbage.write_bytes(b"this is not a DBN file\n" * 100)
    result = histetl(
        "replay", "raw", "--db", pg, "--cluster", dask_cluster.address, "--report", "r.json",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    by_name = {Path(f["path"]).name: f for f in report_of(tmp_path / "r.json")["files"]}  # type: ignore[attr-defined]
    assert by_name["trades-truncated.dbn"]["status"] == "failed"
    assert by_name["garbage.dbn"]["status"] == "failed"
    assert "trades-truncated.dbn" in result.stderr
    assert "garbage.dbn" in result.stderr
    assert "Traceback" not in result.stderr
    assert [by_name[p.name]["status"] for p in good] == ["loaded", "loaded"]
    with psycopg.connect(pg) as conn:
        ledger = conn.execute("SELECT path FROM histetl_ledger ORDER BY path").fetchall()
        rows = conn.execute("SELECT count(*) FROM trades").fetchone()
    assert [Path(p).name for (p,) in ledger] == sorted(p.name for p in good)
    assert rows == (sum(by_name[p.name]["loaded"] for p in good),)


def test_validate_only_on_cluster_writes_quarantine_parquet_and_needs_no_database(
    dask_cluster: Dask, tmp_path: Path
) -> None:
    paths = files(tmp_path / "raw", 2)
    result = histetl(
        "replay", "raw", "--validate-only", "--cluster", dask_cluster.address,
        "--quarantine-dir", "q", "--report", "r.json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = report_of(tmp_path / "r.json")
    assert [f["status"] for f in report["files"]] == ["validated", "validated"]  # type: ignore[index]
    quarantined = [f["quarantine_file"] for f in report["files"] if f["quarantine_file"]]  # type: ignore[index]
    assert len(quarantined) == 1
    assert Path(quarantined[0]).is_file()
    assert report["totals"]["quarantined"] == 3  # type: ignore[index]
    assert not (tmp_path / "histetl.duckdb").exists()
    assert len(paths) == 2


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_replay_on_cluster_when_signalled_cancels_the_tasks_and_exits_128_plus_signal(
    dask_cluster: Dask, tmp_path: Path, sig: int, code: int
) -> None:
    files(tmp_path / "raw", 12, records=20_000)
    with subprocess.Popen(
        [*HISTETL, "replay", "raw", "--validate-only", "--cluster", dask_cluster.address,
         "--quarantine-dir", "q", "--batch-size", "500"],
        cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "HISTETL_CLUSTER"},
    ) as process:  # fmt: skip
        assert process.stderr is not None
        for line in process.stderr:  # the first file finished on the cluster
            if "records," in line:
                break
        process.send_signal(sig)
        started = time.monotonic()
        output = process.stderr.read()
        returncode = process.wait(timeout=60)
    assert returncode == code, output
    assert time.monotonic() - started < 15
    assert "Traceback" not in output
    assert f"interrupted by {signal.Signals(sig).name}: " in output
    assert "of 12 files validated" in output


def test_replay_on_cluster_when_a_worker_is_killed_mid_file_equals_one_clean_load(
    pg: str, pg_server: PgServer, tmp_path: Path
) -> None:
    paths = files(tmp_path / "raw", 4, records=6000)
    cluster = Dask(tmp_path / "dask")
    try:
        # this worker SIGKILLs itself inside its first COPY, and has no nanny to restart it
        doomed = cluster.worker(
            "doomed", env={"HISTETL_TEST_FAULT": "after_batch:1000"}, nanny=False
        )
        cluster.worker("healthy")
        cluster.wait_for(2)
        result = histetl(
            "replay", "raw", "--db", pg, "--cluster", cluster.address, "--batch-size", "500",
            "--report", "r.json", cwd=tmp_path,
        )  # fmt: skip
        assert doomed.wait(timeout=10) == -signal.SIGKILL
    finally:
        cluster.close()
    assert result.returncode == 0, result.stderr
    with fresh_schema(pg_server.uri) as (local_uri, _):
        expected_totals = local_replay(paths, local_uri, tmp_path)
        expected = contents(local_uri)
    assert report_of(tmp_path / "r.json")["totals"] == expected_totals
    assert contents(pg) == expected


def test_replay_on_cluster_when_its_last_worker_dies_fails_after_a_wait_and_rerun_converges(
    pg: str, pg_server: PgServer, tmp_path: Path
) -> None:
    """With no worker left, the tasks would wait for one forever (a cron run that never
    ends): the run fails once the scheduler has had none for WORKERS_TIMEOUT_S."""
    paths = files(tmp_path / "raw", 2, records=6000)
    cluster = Dask(tmp_path / "dask")
    try:
        doomed = cluster.worker(
            "doomed", env={"HISTETL_TEST_FAULT": "after_batch:1000"}, nanny=False
        )
        cluster.wait_for(1)
        command = ["replay", "raw", "--db", pg, "--cluster", cluster.address]
        result = histetl(*command, "--batch-size", "500", cwd=tmp_path)
        assert doomed.wait(timeout=10) == -signal.SIGKILL
        loaded_by_the_failed_run = ledger_rows(pg)
        cluster.worker("healthy")
        cluster.wait_for(1)
        rerun = histetl(*command, cwd=tmp_path)
    finally:
        cluster.close()
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: --cluster: no Dask worker left on the scheduler at {cluster.address} for "
        f"{WORKERS_TIMEOUT_S:.0f}s; 0 of 2 files finished"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert loaded_by_the_failed_run == 0
    assert rerun.returncode == 0, rerun.stderr
    with fresh_schema(pg_server.uri) as (local_uri, _):
        local_replay(paths, local_uri, tmp_path)
        expected = contents(local_uri)
    assert contents(pg) == expected


def test_replay_on_cluster_when_a_worker_cannot_see_a_path_fails_before_any_load(
    pg: str, tmp_path: Path
) -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to give a worker a private mount namespace")
    paths = files(tmp_path / "raw", 2)
    cluster = Dask(tmp_path / "dask")
    try:
        # the worker's own view of the filesystem: an empty tmpfs over the input directory
        hide = f'mount -t tmpfs none {tmp_path / "raw"} && exec "$0" "$@"'
        cluster.worker("elsewhere", wrap=["unshare", "--mount", "--propagation", "private",
                                          "sh", "-c", hide])  # fmt: skip
        cluster.wait_for(1)
        result = histetl("replay", "raw", "--db", pg, "--cluster", cluster.address, cwd=tmp_path)
    finally:
        cluster.close()
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip().splitlines()
    assert message[0].startswith("error: --cluster: worker tcp://127.0.0.1:"), message
    assert f"cannot read {expand_paths(paths)[0]}: No such file or directory" in message[0]
    assert ledger_rows(pg) == 0


def test_replay_on_local_cluster_when_driver_is_killed_leaves_no_worker_and_rerun_converges(
    pg: str, pg_server: PgServer, tmp_path: Path
) -> None:
    paths = files(tmp_path / "raw", 6, records=20_000)
    driver = subprocess.Popen(
        [*HISTETL, "replay", "raw", "--db", pg, "--cluster", "local:2", "--batch-size", "2000"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[psutil.Process] = []
    deadline = time.monotonic() + 60
    with psycopg.connect(pg_server.uri, autocommit=True) as conn:
        while time.monotonic() < deadline and driver.poll() is None:
            busy = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'COPY%'"
            ).fetchone()
            workers = psutil.Process(driver.pid).children(recursive=True)
            if busy and busy[0] and len(workers) >= 2:
                break
            time.sleep(0.05)
    assert driver.poll() is None, "the run finished before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    _, alive = psutil.wait_procs(workers, timeout=15)
    assert alive == [], f"worker processes outlived the driver: {alive}"

    rerun = histetl("replay", "raw", "--db", pg, "--cluster", "local:2", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    with fresh_schema(pg_server.uri) as (local_uri, _):
        local_replay(paths, local_uri, tmp_path)
        expected = contents(local_uri)
    got = contents(pg)
    assert {k: v for k, v in got.items() if k != "ledger"} == {
        k: v for k, v in expected.items() if k != "ledger"
    }
    # a file committed before the kill is skipped by the rerun: same ledger, whichever run
    assert [row[0] for row in got["ledger"]] == [row[0] for row in expected["ledger"]]


def test_replay_on_cluster_when_scheduler_is_lost_fails_clearly_and_a_rerun_converges(
    pg: str, pg_server: PgServer, tmp_path: Path
) -> None:
    paths = files(tmp_path / "raw", 4, records=20_000)
    first = Dask(tmp_path / "dask1")
    try:
        first.worker("w")
        first.wait_for(1)
        driver = subprocess.Popen(
            [*HISTETL, "replay", "raw", "--db", pg, "--cluster", first.address,
             "--batch-size", "2000"],
            cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        with psycopg.connect(pg_server.uri, autocommit=True) as conn:
            while time.monotonic() < deadline and driver.poll() is None:
                query = "SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'COPY%'"
                busy = conn.execute(query).fetchone()
                if busy and busy[0]:
                    break
                time.sleep(0.05)
        assert driver.poll() is None, "the run finished before the scheduler could be lost"
        first.scheduler.send_signal(signal.SIGKILL)
        _, stderr = driver.communicate(timeout=60)
    finally:
        first.close()  # its worker too: a file it was still loading rolls back or commits
    assert driver.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith(f"error: --cluster: lost the Dask scheduler at {first.address}")
    assert "Traceback" not in stderr

    second = Dask(tmp_path / "dask2")
    try:
        second.worker("w")
        second.wait_for(1)
        rerun = histetl("replay", "raw", "--db", pg, "--cluster", second.address, cwd=tmp_path)
    finally:
        second.close()
    assert rerun.returncode == 0, rerun.stderr
    with fresh_schema(pg_server.uri) as (local_uri, _):
        local_replay(paths, local_uri, tmp_path)
        expected = contents(local_uri)
    got = contents(pg)
    assert got.keys() == expected.keys()
    assert [got[k] == expected[k] for k in expected if k != "ledger"] == [True, True]
    assert [row[0] for row in got["ledger"]] == [row[0] for row in expected["ledger"]]


def test_replay_on_cluster_into_duckdb_is_refused_before_any_work(tmp_path: Path) -> None:
    files(tmp_path / "raw", 1, records=100)
    result = histetl(
        "replay", "raw", "--db", f"duckdb:///{tmp_path / 'h.duckdb'}", "--cluster", "local:2",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: --cluster: DuckDB allows one writing process")
    assert not (tmp_path / "h.duckdb").exists()


def test_replay_when_scheduler_is_unreachable_fails_in_one_line_and_loads_nothing(
    pg: str, tmp_path: Path
) -> None:
    from tests.support.pgserver import free_port

    files(tmp_path / "raw", 1, records=100)
    address = f"tcp://127.0.0.1:{free_port()}"
    result = histetl("replay", "raw", "--db", pg, "--cluster", address, cwd=tmp_path)
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"error: --cluster: cannot reach the Dask scheduler at {address}")
    assert "Traceback" not in result.stderr
    assert ledger_rows(pg) == 0


@pytest.mark.parametrize(
    "uri", ["tcp://host", "local:0", "local:x", "http://h:8786", "tcp://h:99999", "dask"]
)
def test_replay_when_cluster_uri_is_malformed_exits_2_naming_the_allowed_forms(
    uri: str, tmp_path: Path
) -> None:
    files(tmp_path / "raw", 1, records=100)
    result = histetl("replay", "raw", "--validate-only", "--cluster", uri, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --cluster: ")
    assert "tcp://HOST:PORT" in result.stderr
    assert "local:N" in result.stderr


def test_replay_with_cluster_and_workers_is_a_usage_error(tmp_path: Path) -> None:
    files(tmp_path / "raw", 1, records=100)
    result = histetl(
        "replay", "raw", "--validate-only", "--cluster", "local:2", "--workers", "2",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("error: --cluster: --workers and --cluster exclude each other")


def test_replay_with_cluster_when_dask_is_not_installed_says_how_to_install_it(
    tmp_path: Path,
) -> None:
    files(tmp_path / "raw", 1, records=100)
    no_dask = "import sys; sys.modules['distributed'] = None; from histetl.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", no_dask, "replay", "raw", "--validate-only", "--cluster", "local"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: --cluster needs the cluster extra: pip install 'histetl[cluster]'"
    )


def test_cluster_from_environment_and_job_file_is_checked_like_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files(tmp_path / "raw", 1, records=100)
    env = {**os.environ, "HISTETL_CLUSTER": "nowhere"}
    result = subprocess.run(
        [*HISTETL, "replay", "raw", "--validate-only"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 2
    assert "'nowhere' is not a cluster address" in result.stderr
    job = {
        "cluster": "local:two",
        "jobs": [
            {"name": "j", "dataset": "GLBX.MDP3", "schema": "trades", "symbols": "ESH4",
             "start": "2024-01-02", "end": "2024-01-03"}
        ],
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"cluster: .*'local:two' is not a cluster address"):
        validate_model(JobFile, job, "job.yaml")
    assert JobFile.model_validate({**job, "cluster": "tcp://scheduler.example:8786"}).cluster


def test_run_with_cluster_in_job_file_fetches_here_and_loads_on_the_cluster(
    dask_cluster: Dask, gw: FakeGateway, pg: str, tmp_path: Path
) -> None:
    job = write_job(tmp_path, gw, top=f"cluster: {dask_cluster.address}\n")
    first = histetl("run", str(job), "--db", pg, "--report", "r.json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = report_of(tmp_path / "r.json")
    assert [f["status"] for f in report["files"]] == ["loaded"] * 3  # type: ignore[index]
    assert report["totals"]["loaded"] == N_TRADES  # type: ignore[index]
    with psycopg.connect(pg) as conn:
        assert conn.execute("SELECT count(*) FROM trades").fetchone() == (N_TRADES,)
    again = histetl("run", str(job), "--db", pg, "--report", "r2.json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    statuses = [f["status"] for f in report_of(tmp_path / "r2.json")["files"]]  # type: ignore[attr-defined]
    assert statuses == ["skipped"] * 3
