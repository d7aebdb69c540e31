"""Fetching from the Databento Historical API (the real client against the local fake gateway):
chunks verified and kept under raw_dir with manifests, retries, the cost guard, the lock, and
loading through the replay pipeline."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from loguru import logger

from histetl.errors import ConfigError, SourceError
from histetl.jobs import JobFile, load_job_file, plan_chunks
from histetl.options import ReplayOptions
from histetl.outputs import write_json
from histetl.pipeline.replay import Replayer
from histetl.pipeline.run import RunOptions, RunResult, run_jobs
from histetl.source.databento.download import (
    chunk_state,
    data_path,
    inspect_download,
    manifest_path,
    part_path,
)
from histetl.source.databento.lock import JobLock, LockBusyError
from histetl.source.databento.plan import BudgetExceededError, format_plans, local_plans
from histetl.source.files import expand_paths
from histetl.synth import Defects, SynthSpec, write_dbn
from tests.support.fake_gateway import FakeGateway, Scripted

DATASET = "GLBX.MDP3"
START = dt.date(2023, 12, 14)  # Thursday; 12-16 is a Saturday without trades
DAYS = 3
N_TRADES = 3000
RANGE = "dataset: GLBX.MDP3\n    start: 2023-12-14\n    end: 2023-12-17"


def synth_bytes(
    tmp_path: Path, schema: str = "trades", records: int = N_TRADES, **spec: Any
) -> bytes:
    path = tmp_path / f"synth-{schema}.dbn.zst"
    spec = {"dataset": DATASET, "symbols": ("ES.c.0",), "stype_in": "continuous", **spec}
    write_dbn(
        SynthSpec(schema=schema, records=records, start=START, days=DAYS, seed=1, **spec), path
    )
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.fixture(scope="module")
def trades(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return synth_bytes(tmp_path_factory.mktemp("synth"))


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    """The fake gateway with no data; the environment points the client and key at it."""
    with FakeGateway(cost_per_record=0.0001) as fake:
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DATABENTO_API_KEY", fake.api_key)
        monkeypatch.delenv("HISTETL_DB", raising=False)
        yield fake
        assert not fake.errors, fake.errors


@pytest.fixture
def gw(gateway: FakeGateway, trades: bytes) -> FakeGateway:
    """The fake gateway serving 3 days of ES.c.0 trades."""
    gateway.add_data(DATASET, "trades", trades)
    return gateway


def write_job(
    tmp_path: Path,
    gw: FakeGateway,
    job: str = "",
    *,
    top: str = "",
    max_attempts: int = 4,
    max_wait_s: float = 60,
) -> Path:
    """A job file in tmp_path; `job` replaces the default job's body."""
    body = job or (
        f"name: es_trades\n    {RANGE}\n    schema: trades\n    symbols: [ES.c.0]\n"
        "    stype_in: continuous\n    chunk_days: 1"
    )
    path = tmp_path / "job.yaml"
    path.write_text(
        "databento:\n"
        f"  gateway: {gw.url}\n"
        f"  retry: {{max_attempts: {max_attempts}, max_wait_s: {max_wait_s}}}\n"
        "raw_dir: raw\n"
        "db: duckdb:///./h.duckdb\n"
        f"{top}"
        "jobs:\n"
        f"  - {body}\n",
        encoding="utf-8",
    )
    return path


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def run(path: Path, sleeps: Sleeps | None = None, **options: Any) -> RunResult:
    return run_jobs(
        load_job_file(path), RunOptions(sleep=Sleeps() if sleeps is None else sleeps, **options)
    )


def endpoints(gw: FakeGateway) -> list[str]:
    return [r.endpoint.split(".")[-1] for r in gw.requests]


def raw_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "raw").rglob("*.dbn.zst")) if (tmp_path / "raw").exists() else []


def leftovers(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "raw").rglob("*.part"))


def db_trades(db: Path) -> np.ndarray:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.sql(
            "SELECT epoch_ns(ts_recv), instrument_id, size FROM trades ORDER BY ALL"
        ).fetchall()
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def served(gw: FakeGateway, job_file: JobFile) -> np.ndarray:
    """What the fake serves for every chunk of the first job, as (ts_recv, id, size) rows."""
    parts = []
    for chunk in plan_chunks(job_file.jobs[0]):
        req = chunk.request()
        recs = gw.expected_records(
            DATASET, chunk.schema, req["start"], req["end"], chunk.symbols, chunk.stype_in
        )
        parts.append(np.stack([recs["ts_recv"], recs["instrument_id"], recs["size"]], axis=1))
    out = np.concatenate(parts).astype(np.int64)
    return out[np.lexsort(out.T[::-1])]


# ------------------------------------------------------------------------------------------
# the happy path, reruns, crashes
# ------------------------------------------------------------------------------------------


def test_run_over_several_chunks_keeps_raw_files_and_loads_exactly_the_served_records(
    gw: FakeGateway, tmp_path: Path
) -> None:
    path = write_job(tmp_path, gw)
    result = run(path)

    assert result.error is None
    assert [c.status for c in result.downloaded] == ["downloaded"] * 3
    assert [c.records for c in result.downloaded] == [1577, 1423, 0]  # Saturday is empty
    files = raw_files(tmp_path)
    assert [f.name[:21] for f in files] == [
        "2023-12-14_2023-12-15",
        "2023-12-15_2023-12-16",
        "2023-12-16_2023-12-17",
    ]
    assert all(f.parent == tmp_path / "raw" / DATASET / "trades" / "es_trades" for f in files)
    assert leftovers(tmp_path) == []

    manifest = json.loads(manifest_path(tmp_path / "raw", result.downloaded[0].chunk).read_text())
    assert manifest["request"] == {
        "dataset": DATASET,
        "schema": "trades",
        "symbols": ["ES.c.0"],
        "stype_in": "continuous",
        "stype_out": "instrument_id",
        "start": "2023-12-14T00:00:00+00:00",
        "end": "2023-12-15T00:00:00+00:00",
    }
    assert manifest["records"] == 1577
    assert manifest["cost_usd"] == pytest.approx(0.1577)
    assert manifest["bytes"] == files[0].stat().st_size
    assert gw.api_key not in json.dumps(manifest)

    assert result.report is not None
    assert result.report.totals["loaded"] == N_TRADES
    assert [f.status for f in result.report.files] == ["loaded"] * 3
    loaded = db_trades(tmp_path / "h.duckdb")
    assert np.array_equal(loaded, served(gw, load_job_file(path)))
    # the request carried exactly the chunk's parameters
    get_range = gw.requests_for("timeseries.get_range")[0].params
    assert (get_range["symbols"], get_range["stype_in"], get_range["schema"]) == (
        "ES.c.0",
        "continuous",
        "trades",
    )


def test_second_run_downloads_nothing_and_loads_nothing(gw: FakeGateway, tmp_path: Path) -> None:
    path = write_job(tmp_path, gw)
    run(path)
    gw.requests.clear()
    before = [(f, f.stat().st_mtime_ns) for f in raw_files(tmp_path)]

    again = run(path)

    assert gw.requests == []  # not even a cost query: complete chunks are known locally
    assert [(f, f.stat().st_mtime_ns) for f in raw_files(tmp_path)] == before
    assert again.report is not None
    assert [f.status for f in again.report.files] == ["skipped"] * 3
    assert again.report.totals["loaded"] == 0
    assert again.report.totals["skipped"] == N_TRADES
    assert len(db_trades(tmp_path / "h.duckdb")) == N_TRADES


def test_rerun_after_crash_between_download_and_load_loads_without_refetching(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_job(tmp_path, gw)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Replayer, "run", crash)
        with pytest.raises(KeyboardInterrupt):
            run(path)
    assert len(raw_files(tmp_path)) == 3
    gw.requests.clear()

    result = run(path)

    assert "get_range" not in endpoints(gw)
    assert result.report is not None
    assert result.report.totals["loaded"] == N_TRADES
    assert np.array_equal(db_trades(tmp_path / "h.duckdb"), served(gw, load_job_file(path)))


def test_partial_download_left_by_a_crash_is_never_taken_for_complete(
    gw: FakeGateway, tmp_path: Path
) -> None:
    path = write_job(tmp_path, gw)
    job_file = load_job_file(path)
    first, second, third = plan_chunks(job_file.jobs[0])
    raw = tmp_path / "raw"
    # a crash mid-stream leaves a .part; a crash after the rename, before the manifest, leaves
    # a data file without its manifest; a manifest whose file is short is no better.
    part_path(raw, first).parent.mkdir(parents=True)
    part_path(raw, first).write_bytes(b"\x28\xb5\x2f\xfd partial")
    data_path(raw, second).write_bytes(b"whatever")
    assert [chunk_state(raw, c).status for c in (first, second, third)] == [
        "partial",
        "partial",
        "missing",
    ]

    result = run(path)

    assert [c.status for c in result.plans[0].chunks] == ["downloaded"] * 3
    assert [chunk_state(raw, c).status for c in (first, second, third)] == ["complete"] * 3
    assert leftovers(tmp_path) == []
    assert all(inspect_download(f).complete for f in raw_files(tmp_path))
    assert result.report is not None
    assert result.report.totals["loaded"] == N_TRADES


def test_force_fetches_complete_chunks_again_and_reloads(gw: FakeGateway, tmp_path: Path) -> None:
    path = write_job(tmp_path, gw)
    run(path)
    gw.requests.clear()

    result = run(path, force=True)

    assert endpoints(gw).count("get_range") == 3
    assert result.report is not None
    assert result.report.totals["duplicates"] == N_TRADES  # same records: nothing new
    assert len(db_trades(tmp_path / "h.duckdb")) == N_TRADES


def test_run_after_mapping_changes_table_loads_files_into_the_new_table(
    gw: FakeGateway, tmp_path: Path
) -> None:
    run(write_job(tmp_path, gw))
    gw.requests.clear()
    (tmp_path / "mapping.yaml").write_text("tables:\n  trades:\n    table: trades_v2\n")

    again = run(write_job(tmp_path, gw, top="mapping: mapping.yaml\n"))

    assert gw.requests == []  # the chunks are complete: nothing fetched
    assert again.report is not None
    assert [(f.status, f.table) for f in again.report.files] == [("loaded", "trades_v2")] * 3
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM trades_v2").fetchone() == (N_TRADES,)
    third = run(write_job(tmp_path, gw, top="mapping: mapping.yaml\n"))
    assert third.report is not None
    assert [f.status for f in third.report.files] == ["skipped"] * 3


def test_replay_of_raw_dir_on_a_fresh_database_reproduces_the_tables(
    gw: FakeGateway, tmp_path: Path
) -> None:
    run(write_job(tmp_path, gw))
    fresh = tmp_path / "fresh.duckdb"
    report = Replayer(ReplayOptions(db=f"duckdb:///{fresh}", quarantine_dir=tmp_path / "q")).run(
        expand_paths([tmp_path / "raw"])
    )
    assert report.totals["loaded"] == N_TRADES
    query = "SELECT * FROM trades ORDER BY ALL"
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        ran = con.sql(query).to_arrow_table()
    with duckdb.connect(str(fresh), read_only=True) as con:
        replayed = con.sql(query).to_arrow_table()
    assert ran.num_rows == N_TRADES
    assert ran.equals(replayed)
    with duckdb.connect(str(fresh), read_only=True) as con:
        assert con.sql("SELECT DISTINCT symbol FROM trades").fetchall() == [("ES.c.0",)]


# ------------------------------------------------------------------------------------------
# retries and failures
# ------------------------------------------------------------------------------------------


def test_429_is_retried_after_the_servers_retry_after(gw: FakeGateway, tmp_path: Path) -> None:
    gw.script("timeseries.get_range", Scripted(status=429, headers={"Retry-After": "7"}))
    gw.script("metadata.get_cost", Scripted(status=429, headers={"Retry-After": "600"}))
    sleeps = Sleeps()

    result = run(write_job(tmp_path, gw, max_wait_s=30), sleeps)

    assert result.error is None
    assert sleeps == [30.0, 7.0]  # Retry-After honoured, capped by retry.max_wait_s
    assert result.report is not None
    assert result.report.totals["loaded"] == N_TRADES


def test_500_then_success_backs_off_and_loads_everything(gw: FakeGateway, tmp_path: Path) -> None:
    gw.script("timeseries.get_range", Scripted(status=500), Scripted(status=503))
    gw.script("metadata.get_record_count", Scripted(status=502))
    sleeps = Sleeps()

    result = run(write_job(tmp_path, gw, max_wait_s=5), sleeps)

    assert result.error is None
    assert len(sleeps) == 3
    assert all(0 < s <= 5 for s in sleeps)
    assert endpoints(gw).count("get_range") == 5
    assert result.report is not None
    assert result.report.totals["loaded"] == N_TRADES
    assert np.array_equal(
        db_trades(tmp_path / "h.duckdb"), served(gw, load_job_file(tmp_path / "job.yaml"))
    )


@pytest.mark.parametrize(
    "cut",
    [
        Scripted(truncate_after=3000, framing="chunked"),
        Scripted(truncate_after=3000, framing="content-length"),
        Scripted(truncate_after=3000, framing="close"),  # clean close: only the check sees it
        Scripted(truncate_after=20, framing="close"),  # inside the DBN header
    ],
    ids=["chunked", "content-length", "clean-close", "clean-close-in-header"],
)
def test_body_cut_off_mid_stream_is_retried_and_never_kept(
    gw: FakeGateway, tmp_path: Path, cut: Scripted
) -> None:
    gw.script("timeseries.get_range", cut)

    result = run(write_job(tmp_path, gw))

    assert result.error is None
    assert endpoints(gw).count("get_range") == 4
    assert leftovers(tmp_path) == []
    assert [inspect_download(f).records for f in raw_files(tmp_path)] == [1577, 1423, 0]
    assert result.report is not None
    assert result.report.totals["loaded"] == N_TRADES


def test_persistent_failure_gives_up_keeps_what_is_complete_and_loads_it(
    gw: FakeGateway, tmp_path: Path
) -> None:
    # chunk 1 succeeds, chunk 2 fails three times in a row (max_attempts 3)
    gw.script("timeseries.get_range", Scripted(), *[Scripted(status=500)] * 3)

    result = run(write_job(tmp_path, gw, max_attempts=3))

    assert isinstance(result.error, SourceError)
    assert "gave up after 3 attempts" in result.error.message
    assert "2023-12-15..2023-12-16" in result.error.message
    assert [c.status for c in result.plans[0].chunks] == ["downloaded", "failed", "missing"]
    assert leftovers(tmp_path) == []
    assert len(raw_files(tmp_path)) == 1
    assert result.report is not None
    assert result.report.totals["loaded"] == 1577


def test_401_fails_fast_with_what_to_check_and_without_the_key(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "db-" + "W" * 29
    monkeypatch.setenv("DATABENTO_API_KEY", wrong)
    logs = capture_logs()
    with pytest.raises(SourceError) as excinfo:
        run(write_job(tmp_path, gw))
    message = excinfo.value.message
    assert "HTTP 401" in message
    assert "Authentication failed" in message
    assert "$DATABENTO_API_KEY" in message
    assert wrong not in message
    assert wrong not in "".join(logs)
    assert len(gw.requests) == 1  # no retry
    assert raw_files(tmp_path) == []


@pytest.mark.parametrize("status", [403, 422])
def test_4xx_fails_fast_with_the_servers_message(
    gw: FakeGateway, tmp_path: Path, status: int
) -> None:
    gw.script(
        "timeseries.get_range",
        Scripted(status=status, body={"detail": {"case": "x", "message": "Nope, not that."}}),
    )
    result = run(write_job(tmp_path, gw))
    assert result.error is not None
    assert f"HTTP {status}" in result.error.message
    assert "x: Nope, not that." in result.error.message
    assert "hint:" in result.error.message
    assert endpoints(gw).count("get_range") == 1
    assert raw_files(tmp_path) == []
    assert leftovers(tmp_path) == []


def test_api_warning_header_is_logged_and_the_download_goes_on(
    gw: FakeGateway, tmp_path: Path
) -> None:
    header = json.dumps(["Warning: The dataset has reduced quality on 2023-12-14"])
    gw.script("timeseries.get_range", Scripted(headers={"X-Warning": header}))
    logs = capture_logs()
    result = run(write_job(tmp_path, gw))
    assert result.error is None
    assert any("reduced quality" in line for line in logs)


def test_the_key_never_appears_in_logs_errors_files_or_reports(
    gw: FakeGateway, tmp_path: Path
) -> None:
    gw.script(
        "timeseries.get_range",
        Scripted(status=429, headers={"Retry-After": "0"}),
        Scripted(status=500, body={"detail": f"echo {gw.api_key}"}),  # a server echoing it
        Scripted(truncate_after=100, framing="chunked"),
    )
    logs = capture_logs()
    result = run(write_job(tmp_path, gw))
    write_json(tmp_path / "report.json", result.to_dict())
    assert any("***" in line for line in logs)  # the echoed key was scrubbed
    texts = ["".join(logs), repr(result)]
    texts += [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    assert not [t[:200] for t in texts if gw.api_key in t]


# ------------------------------------------------------------------------------------------
# cost guard, dry run, lock, configuration
# ------------------------------------------------------------------------------------------


def test_over_budget_job_is_refused_with_the_figure_before_any_download(
    gw: FakeGateway, tmp_path: Path
) -> None:
    job = (
        f"name: es_trades\n    {RANGE}\n    schema: trades\n    symbols: ES.c.0\n"
        "    stype_in: continuous\n    max_cost_usd: 0.25"
    )
    with pytest.raises(BudgetExceededError) as excinfo:
        run(write_job(tmp_path, gw, job))
    assert "would cost $0.30" in excinfo.value.message
    assert "max_cost_usd $0.25" in excinfo.value.message
    assert "get_range" not in endpoints(gw)
    assert raw_files(tmp_path) == []


def test_dry_run_prices_every_chunk_and_downloads_nothing(gw: FakeGateway, tmp_path: Path) -> None:
    result = run(write_job(tmp_path, gw), dry_run=True)
    assert result.report is None
    assert [c.records for c in result.plans[0].chunks] == [1577, 1423, 0]
    assert result.plans[0].cost_usd == pytest.approx(0.3)
    assert "get_range" not in endpoints(gw)
    assert endpoints(gw).count("get_cost") == 2  # an empty chunk costs nothing: not asked
    assert not (tmp_path / "raw").exists()
    assert not (tmp_path / "h.duckdb").exists()
    text = format_plans(result.plans)
    assert "3 chunks: 3 missing" in text
    assert "to fetch: 3 chunks, 3,000 records, $0.3000" in text


def test_a_second_run_while_one_holds_the_lock_does_nothing(
    gw: FakeGateway, tmp_path: Path
) -> None:
    path = write_job(tmp_path, gw)
    with JobLock(tmp_path / "raw", ["es_trades"]), pytest.raises(LockBusyError) as excinfo:
        run(path, lock_wait_s=0.2)
    assert "another histetl run holds the lock of this job (es_trades: pid" in excinfo.value.message
    assert gw.requests == []
    # released: the next run proceeds
    assert run(path).error is None


def test_a_run_waits_for_another_process_holding_the_lock_then_does_only_the_rest(
    gw: FakeGateway, tmp_path: Path
) -> None:
    path = write_job(tmp_path, gw)
    lock = tmp_path / "raw" / ".locks" / "es_trades.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockBusyError):
            run(path)  # no --wait: gives up at once
        threading.Timer(0.3, holder.communicate, kwargs={"input": ""}).start()
        result = run(path, lock_wait_s=30)  # waits until the holder exits
    finally:
        holder.kill()
        holder.wait()
    assert result.report is not None
    assert result.report.totals["loaded"] == N_TRADES


def test_runs_of_different_jobs_do_not_block_each_other(gw: FakeGateway, tmp_path: Path) -> None:
    path = write_job(tmp_path, gw)
    with JobLock(tmp_path / "raw", ["some_other_job"]):
        assert run(path).error is None


HOLD_LOCK = """
import fcntl, sys
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX)
handle.write("pid of the test's holder")
handle.flush()
print("locked", flush=True)
sys.stdin.read()
"""


def test_missing_key_variable_is_a_config_error_before_any_request(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABENTO_API_KEY")
    with pytest.raises(ConfigError) as excinfo:
        run(write_job(tmp_path, gw))
    assert excinfo.value.exit_code == 2
    assert "DATABENTO_API_KEY is not set" in excinfo.value.message
    assert gw.requests == []


def test_unwritable_raw_dir_is_a_config_error_before_any_request(
    gw: FakeGateway, tmp_path: Path
) -> None:
    (tmp_path / "raw").write_text("a file, not a directory")
    with pytest.raises(ConfigError, match="cannot create the lock file") as excinfo:
        run(write_job(tmp_path, gw))
    assert "raw_dir must be a writable directory" in excinfo.value.message
    assert gw.requests == []


def test_local_plans_reports_status_without_the_network(gw: FakeGateway, tmp_path: Path) -> None:
    path = write_job(tmp_path, gw)
    run(path, jobs=("es_trades",))
    gw.requests.clear()
    job_file = load_job_file(path)
    plans = local_plans(list(job_file.jobs), job_file.raw_dir)
    assert [c.status for c in plans[0].chunks] == ["complete"] * 3
    assert [c.records for c in plans[0].chunks] == [1577, 1423, 0]
    assert gw.requests == []
    assert "nothing to fetch" in format_plans(plans, show_files=True)


# ------------------------------------------------------------------------------------------
# definitions by parent symbol, quarantine
# ------------------------------------------------------------------------------------------


def test_definitions_by_parent_symbol_load_every_contract_and_spread(
    gw: FakeGateway, tmp_path: Path
) -> None:
    # The fake cannot resolve parent symbols (Databento maps them under each child's raw symbol),
    # so the chunk's answers are scripted with the file a parent request returns.
    body = synth_bytes(tmp_path, "definition", 12, symbols=("ES.FUT",), stype_in="parent")
    gw.script("metadata.get_record_count", Scripted(body=12))
    gw.script("metadata.get_cost", Scripted(body=0.5))
    gw.script("timeseries.get_range", Scripted(body=body))
    job = (
        "name: es_defs\n    dataset: GLBX.MDP3\n    schema: definition\n    symbols: [ES.FUT]\n"
        "    stype_in: parent\n    start: 2023-12-14\n    end: 2023-12-17\n    chunk_days: 3"
    )

    result = run(write_job(tmp_path, gw, job))

    assert result.error is None
    assert gw.requests_for("timeseries.get_range")[0].params["stype_in"] == "parent"
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        got = con.sql("SELECT raw_symbol, symbol FROM definition").fetchall()
    assert len(got) == 12
    raw_symbols = {r[0] for r in got}
    assert any("-" in s for s in raw_symbols)  # the calendar spread came too
    assert {r[1] for r in got} == raw_symbols  # each mapped under its own raw symbol
    # replaying the kept raw file maps the symbols the same way
    fresh = tmp_path / "fresh.duckdb"
    Replayer(ReplayOptions(db=f"duckdb:///{fresh}", quarantine_dir=tmp_path / "q")).run(
        expand_paths([tmp_path / "raw"])
    )
    query = "SELECT * FROM definition ORDER BY ALL"
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        ran = con.sql(query).to_arrow_table()
    with duckdb.connect(str(fresh), read_only=True) as con:
        assert con.sql(query).to_arrow_table().equals(ran)


def test_invalid_rows_are_quarantined_as_replay_does(gateway: FakeGateway, tmp_path: Path) -> None:
    gateway.add_data(
        DATASET, "trades", synth_bytes(tmp_path, records=500, defects=Defects(zero_size=5))
    )
    result = run(write_job(tmp_path, gateway, top="quarantine_dir: q\n"))
    assert result.report is not None
    assert result.report.totals["quarantined"] == 5
    assert list((tmp_path / "q").rglob("*.parquet"))


def capture_logs() -> list[str]:
    lines: list[str] = []
    logger.add(lines.append, level="DEBUG", format="{message}")
    return lines


@pytest.fixture(autouse=True)
def _reset_logger() -> Iterator[None]:
    yield
    logger.remove()
    logger.add(sys.stderr)
