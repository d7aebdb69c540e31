"""The PostgreSQL / TimescaleDB target against real servers: idempotent, exact, crash-safe,
safe under concurrent loaders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from histetl.faults import FAULT_ENV
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer, init_db
from histetl.report import RunReport
from histetl.schemas import all_specs
from histetl.source.files import expand_paths
from histetl.synth import Defects, SynthSpec, write_dbn
from histetl.targets import TimescaleOptions
from tests.reference import decode_with_symbols

HISTETL = [sys.executable, "-m", "histetl.cli"]


def load(uri: str, paths: list[Path], tmp_path: Path, **options: Any) -> RunReport:
    opts = ReplayOptions(db=uri, quarantine_dir=tmp_path / "quarantine", **options)
    return Replayer(opts).run(expand_paths(paths))


def query(uri: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(uri) as conn:
        return conn.execute(sql).fetchall()


def snapshot(uri: str, tables: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    return {t: sorted(query(uri, f"SELECT * FROM {t}"), key=repr) for t in tables}


def files(tmp_path: Path) -> list[Path]:
    specs = [
        SynthSpec(
            schema="trades",
            records=3000,
            seed=1,
            shared_key_trades=30,
            defects=Defects(exact_duplicates=5, zero_size=3),
        ),
        SynthSpec(schema="tbbo", records=1500, seed=2),
        SynthSpec(schema="ohlcv-1m", records=500, seed=3),
        SynthSpec(schema="definition", records=12, seed=4, symbols=("ES.FUT",), stype_in="parent"),
    ]
    paths = []
    for spec in specs:
        path = tmp_path / "raw" / f"{spec.schema}.dbn.zst"
        path.parent.mkdir(exist_ok=True)
        write_dbn(spec, path)
        paths.append(path)
    return paths


def test_replay_twice_changes_nothing(db_uri: str, tmp_path: Path) -> None:
    paths = files(tmp_path)
    first = load(db_uri, paths, tmp_path, batch_size=700)
    assert not first.failed, [f.error for f in first.failed]
    trades = first.files[next(i for i, f in enumerate(first.files) if f.schema == "trades")]
    assert (trades.duplicates, trades.quarantined) == (5, 3)
    assert trades.loaded == trades.records - 8
    tables = [f.table for f in first.files]
    before = snapshot(db_uri, tables)
    assert len(before["trades"]) == trades.loaded
    second = load(db_uri, paths, tmp_path)
    assert [f.status for f in second.files] == ["skipped"] * len(paths)
    forced = load(db_uri, paths, tmp_path, force=True, batch_size=1000)
    assert forced.totals["loaded"] == 0
    assert forced.totals["duplicates"] == first.totals["loaded"] + first.totals["duplicates"]
    assert snapshot(db_uri, tables) == before
    assert len(query(db_uri, "SELECT * FROM histetl_ledger")) == len(paths)


def test_nanoseconds_and_prices_survive_exactly(db_uri: str, tmp_path: Path) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=400, seed=8), path)
    load(db_uri, [path], tmp_path)
    decoded, _ = decode_with_symbols(path)
    expected = sorted(
        zip(
            decoded.column("ts_recv").cast("int64").to_pylist(),
            decoded.column("ts_event").cast("int64").to_pylist(),
            decoded.column("price").to_pylist(),
            decoded.column("record_hash").to_pylist(),
            strict=True,
        )
    )
    stored = sorted(
        query(
            db_uri,
            "SELECT ts_recv_ns, ts_event_ns, price, record_hash, "
            "extract(epoch FROM ts_recv) FROM trades",
        )
    )
    assert [r[:4] for r in stored] == expected
    assert all(isinstance(r[2], Decimal) for r in stored)
    assert any(r[0] % 1000 for r in stored), "test data should carry sub-microsecond digits"
    for ns, *_, epoch in stored:  # the timestamptz column is the ns value truncated to us
        assert int(Decimal(epoch) * 1_000_000) == ns // 1000


# t1 has 2000 records, t2 5000: after_batch:4000 can only fire inside the second file
@pytest.mark.parametrize(
    "point", ["after_batch:1000", "after_batch:4000", "before_commit", "after_commit"]
)
def test_sigkill_at_any_point_then_rerun_equals_one_clean_load(
    db_uri: str, tmp_path: Path, point: str
) -> None:
    paths = []
    for seed, records in ((1, 2000), (2, 5000)):
        path = tmp_path / f"t{seed}.dbn"
        write_dbn(
            SynthSpec(
                schema="trades",
                records=records,
                seed=seed,
                start=SynthSpec.start.replace(day=13 + 2 * seed),
            ),
            path,
        )
        paths.append(path)
    command = [
        *HISTETL,
        "-q",
        "replay",
        *map(str, paths),
        "--db",
        db_uri,
        "--batch-size",
        "1000",
        "--quarantine-dir",
        str(tmp_path / "q"),
    ]
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
    stored = query(db_uri, "SELECT ts_recv_ns, record_hash FROM trades")
    assert len(stored) == len(expected) == 7000
    assert set(stored) == expected
    ledger = query(db_uri, "SELECT path, records, loaded FROM histetl_ledger ORDER BY path")
    assert [(Path(p).name, r, n) for p, r, n in ledger] == [
        ("t1.dbn", 2000, 2000),
        ("t2.dbn", 5000, 5000),
    ]


def test_concurrent_loaders_never_double_load(pg_uri: str, tmp_path: Path) -> None:
    paths = []
    for seed in range(3):
        path = tmp_path / f"t{seed}.dbn"
        write_dbn(
            SynthSpec(
                schema="trades",
                records=20_000,
                seed=seed,
                start=SynthSpec.start.replace(day=10 + 2 * seed),
            ),
            path,
        )
        paths.append(str(path))
    runs = []
    for n, order in enumerate([paths, paths[::-1]]):
        report = tmp_path / f"report{n}.json"
        runs.append(
            (
                report,
                subprocess.Popen(
                    [
                        *HISTETL,
                        "-q",
                        "replay",
                        *order,
                        "--db",
                        pg_uri,
                        "--report",
                        str(report),
                        "--batch-size",
                        "5000",
                        "--quarantine-dir",
                        str(tmp_path / "q"),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    totals = {"loaded": 0, "duplicates": 0, "skipped": 0}
    for report, proc in runs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        data = json.loads(report.read_text())
        for key in totals:
            totals[key] += data["totals"][key]
    # every file loaded exactly once: by one process, skipped (or all-duplicate) in the other
    assert totals["loaded"] == 60_000
    assert totals["skipped"] + totals["duplicates"] == 60_000
    assert query(pg_uri, "SELECT count(*), count(DISTINCT (ts_recv, record_hash)) FROM trades") == [
        (60_000, 60_000)
    ]


def test_unreachable_database_fails_clearly_without_the_password(tmp_path: Path) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=10, seed=1), path)
    result = subprocess.run(
        [
            *HISTETL,
            "replay",
            str(path),
            "--db",
            "postgresql://bob:hunter2pw@127.0.0.1:1/x",
            "--db-retries",
            "2",
            "--db-retry-max-wait",
            "0.1",
            "--report",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "PostgreSQL at 127.0.0.1:1" in result.stderr
    assert "retrying" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2pw" not in result.stderr + result.stdout


def test_db_init_is_idempotent_and_creates_every_table(db_uri: str) -> None:
    init_db(db_uri)
    init_db(db_uri)
    names = {
        r[0]
        for r in query(
            db_uri,
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema()",
        )
    }
    assert {spec.table for spec in all_specs()} <= names
    migrations = query(db_uri, "SELECT version FROM histetl_migrations ORDER BY version")
    assert migrations == [(1,), (2,)]


def test_timescale_hypertables_take_reruns_into_compressed_chunks(
    timescale_uri: str, tmp_path: Path
) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=3000, days=3, seed=3), path)
    first = load(timescale_uri, [path], tmp_path)
    assert first.totals["loaded"] == 3000
    hypertables = query(
        timescale_uri,
        "SELECT hypertable_name, num_chunks FROM "
        "timescaledb_information.hypertables WHERE "
        "hypertable_schema = current_schema()",
    )
    assert ("trades", 2) in hypertables or any(n >= 2 for t, n in hypertables if t == "trades")
    with psycopg.connect(timescale_uri, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE trades SET (timescaledb.compress, "
            "timescaledb.compress_segmentby = 'instrument_id')"
        )
        conn.execute("SELECT compress_chunk(c) FROM show_chunks('trades') c")
        compressed = conn.execute(
            "SELECT count(*) FROM chunk_compression_stats('trades') "
            "WHERE compression_status = 'Compressed'"
        ).fetchone()
    assert compressed is not None
    assert compressed[0] >= 2
    forced = load(timescale_uri, [path], tmp_path, force=True)
    assert (forced.totals["duplicates"], forced.totals["loaded"]) == (3000, 0)
    assert query(timescale_uri, "SELECT count(*) FROM trades") == [(3000,)]


def test_db_init_adds_timescale_policies_from_options(timescale_uri: str) -> None:
    options = TimescaleOptions(
        chunk_interval="12 hours", compress_after="7 days", retain_for="730 days"
    )
    init_db(timescale_uri, options)
    init_db(timescale_uri, options)  # idempotent
    jobs = query(
        timescale_uri,
        "SELECT proc_name, hypertable_name FROM "
        "timescaledb_information.jobs WHERE hypertable_schema = "
        "current_schema() AND hypertable_name = 'trades'",
    )
    assert sorted(proc for proc, _ in jobs) == ["policy_compression", "policy_retention"]
    interval = query(
        timescale_uri,
        "SELECT time_interval FROM "
        "timescaledb_information.dimensions WHERE hypertable_schema"
        " = current_schema() AND hypertable_name = 'trades'",
    )
    assert str(interval[0][0]) == "12:00:00"


def test_db_init_rejects_a_bad_interval(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            *HISTETL,
            "db",
            "init",
            "--db",
            f"duckdb:///{tmp_path / 'x.db'}",
            "--compress-after",
            "soon",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--compress-after: 'soon' is not an interval" in result.stderr


def test_mapping_table_names_past_63_bytes_are_refused_not_merged(
    pg_uri: str, tmp_path: Path
) -> None:
    """PostgreSQL truncates names to 63 bytes: two long names equal in their first 63 bytes
    would silently be one table."""
    stem = "t" * 63
    paths = []
    for n, schema in enumerate(("trades", "tbbo")):
        path = tmp_path / f"{schema}.dbn"
        write_dbn(SynthSpec(schema=schema, records=50, seed=n), path)
        paths.append(path)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(f"tables:\n  trades:\n    table: {stem}a\n  tbbo:\n    table: {stem}b\n")
    report = load(pg_uri, paths, tmp_path, mapping_file=mapping)
    assert [f.status for f in report.files] == ["failed", "failed"]
    for f in report.files:
        assert f.loaded == 0
        assert "is 64 bytes; PostgreSQL names are at most 63 bytes" in (f.error or "")
        assert "mapping key `table`" in (f.error or "")
    assert query(pg_uri, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ttt%'") == [(0,)]


@pytest.mark.parametrize("name", ['Odd "Name', "dotted.name", "UPPER", "it's", "x" * 63])
def test_mapping_table_names_with_quotes_dots_or_case_load_exactly_there(
    db_uri: str, tmp_path: Path, name: str
) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=40, seed=1), path)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(f"tables:\n  trades:\n    table: {json.dumps(name)}\n")
    report = load(db_uri, [path], tmp_path, mapping_file=mapping)
    assert [f.status for f in report.files] == ["loaded"], report.files[0].error
    quoted = '"' + name.replace('"', '""') + '"'
    assert query(db_uri, f"SELECT count(*) FROM {quoted}") == [(40,)]
    assert load(db_uri, [path], tmp_path, mapping_file=mapping).totals["skipped"] == 40


def test_timescale_unavailable_warning_appears_once_per_process(pg_uri: str) -> None:
    from loguru import logger

    from histetl.targets import open_sink
    from histetl.targets.postgres import sink as postgres

    postgres._WARNED_NO_TIMESCALE.clear()  # a fresh process, as far as the warning goes
    seen: list[str] = []
    sink_id = logger.add(lambda m: seen.append(str(m)), level="WARNING")
    try:
        for _ in range(2):
            sink = open_sink(pg_uri)
            sink.reconnect()
            sink.ledger()
            sink.close()
    finally:
        logger.remove(sink_id)
    assert sum("TimescaleDB is not available" in m for m in seen) == 1, seen


def test_db_init_timescale_options_on_plain_postgres_are_refused(pg_uri: str) -> None:
    result = subprocess.run(
        [*HISTETL, "db", "init", "--db", pg_uri, "--retain-for", "30 days"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "--retain-for need TimescaleDB, but PostgreSQL at" in result.stderr
    assert "has no timescaledb extension" in result.stderr
    plain = subprocess.run(
        [*HISTETL, "db", "init", "--db", pg_uri], capture_output=True, text=True, check=False
    )
    assert plain.returncode == 0, plain.stderr


def test_db_init_timescale_options_on_duckdb_are_refused(tmp_path: Path) -> None:
    db = f"duckdb:///{tmp_path / 'x.duckdb'}"
    for option in (["--compress-after", "7 days"], ["--chunk-interval", "1 day"]):
        result = subprocess.run(
            [*HISTETL, "db", "init", "--db", db, *option],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert f"{option[0]} need TimescaleDB, but {db} is a DuckDB database" in result.stderr
    assert not (tmp_path / "x.duckdb").exists()


@pytest.fixture
def unprivileged_role(pg_server: Any) -> Any:
    name = "histetl_noperm"
    with psycopg.connect(pg_server.uri, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {name}")
        conn.execute(f"CREATE ROLE {name} LOGIN")
        conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {name}, PUBLIC")
    yield name
    with psycopg.connect(pg_server.uri, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {name}")
        conn.execute(f"DROP ROLE {name}")


@pytest.mark.parametrize(
    ("who", "reason", "hint"),
    [
        ("postgres@{host}/no_such_db", 'database "no_such_db" does not exist', "createdb"),
        ("no_such_role@{host}/postgres", 'role "no_such_role" does not exist', "CREATE ROLE"),
        ("histetl_noperm@{host}/postgres", "permission denied for schema public", "grant"),
    ],
    ids=["missing-database", "missing-role", "permission-denied"],
)
def test_replay_when_database_refuses_fails_at_once_with_what_to_do(
    pg_server: Any, unprivileged_role: str, tmp_path: Path, who: str, reason: str, hint: str
) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=10, seed=1), path)
    uri = "postgresql://" + who.format(host=f"{pg_server.host}:{pg_server.port}")
    result = subprocess.run(
        [*HISTETL, "replay", str(path), "--db", uri, "--db-retry-max-wait", "5"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "attempt" not in result.stderr  # terminal: never retried
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: PostgreSQL at {pg_server.host}:{pg_server.port} (user ")
    assert reason in lines[0]
    assert hint in lines[1]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("ddl", "reason"),
    [
        ("CREATE TABLE trades (x int)", 'column "symbol" does not exist'),
        ("CREATE VIEW trades AS SELECT 1 AS x", 'cannot create index on relation "trades"'),
    ],
    ids=["table", "view"],
)
def test_replay_when_a_table_of_a_histetl_name_is_someone_elses_says_so_and_sets_up_nothing(
    pg_uri: str, tmp_path: Path, ddl: str, reason: str
) -> None:
    """Migration 002 creates every canonical table: a `trades` that something else made used
    to fail as a bare "query failed: Failed to execute query 'CREATE INDEX ...'"."""
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=10, seed=1), path)
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(ddl)
    result = subprocess.run(
        [*HISTETL, "replay", str(path), "--db", pg_uri],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].endswith(
        "cannot set up histetl's tables (migration 002_tables.sql, at `CREATE INDEX IF NOT "
        f'EXISTS "trades_symbol_time" ON "trades" (symbol, "ts_recv")`): {reason}'
    ), result.stderr
    assert lines[1].startswith("  hint: a table, view or index of that name that histetl did")
    assert "Traceback" not in result.stderr
    with psycopg.connect(pg_uri) as conn:  # the migrations' transaction rolled back whole
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    assert tables == [("trades",)]
