"""`histetl lake optimize` / `vacuum` on a local lake and on S3 (the session's moto server):
loads stay exactly once after maintenance, vacuum's safe defaults (a dry run, the table's
retention, files of a running load kept), one-line errors (real CLI subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from histetl.synth import SynthSpec, write_dbn
from histetl.targets import read_ledger
from histetl.targets.delta.layout import KEEP_LOG
from tests.targets.delta import test_sink as test_delta
from tests.targets.delta.test_sink import Lake
from tests.targets.duckdb.test_sink import HISTETL, replay

lake = test_delta.lake  # the fixture: a fresh lake on local disk, or on the S3 server


def _one_day_files(tmp_path: Path, n: int = 3) -> list[Path]:
    """n trade files on the same day: each load adds a data file to one partition."""
    paths = []
    for seed in range(n):
        path = tmp_path / f"d{seed}.dbn"
        write_dbn(SynthSpec(schema="trades", records=2000, seed=200 + seed), path)
        paths.append(path)
    return paths


def _lake_cli(lake: Lake, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HISTETL, "lake", *args, "--db", lake.db], capture_output=True, text=True, check=False
    )


def _ok(lake: Lake, *args: str) -> list[str]:
    result = _lake_cli(lake, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _refused(lake: Lake, *args: str) -> list[str]:
    result = _lake_cli(lake, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()


def _data_files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root)) for p in root.rglob("*.parquet") if p.parent.name != "_delta_log"
    }


def test_load_optimize_vacuum_then_rerun_skips_every_file_and_tables_are_unchanged(
    lake: Lake, tmp_path: Path
) -> None:
    paths = _one_day_files(tmp_path)
    subprocess.run(replay(lake.db, paths, tmp_path), check=True)
    rows, entries = lake.rows(), read_ledger(lake.db)
    before, days = len(lake.table().file_uris()), rows["date"].n_unique()
    assert before == len(paths) * days

    assert _ok(lake, "optimize") == [
        f"trades: {before} files compacted into {days} ({days} partitions)"
    ]
    assert len(lake.table().file_uris()) == days
    vacuumed = _ok(lake, "vacuum", "--retention-hours", "0", "--break-time-travel", "--apply")
    assert vacuumed == [f"trades: {before} files deleted (unneeded for 0 h)"]

    report = tmp_path / "report.json"
    version = lake.table().version()
    subprocess.run([*replay(lake.db, paths, tmp_path), "--report", str(report)], check=True)
    assert [f["status"] for f in json.loads(report.read_text())["files"]] == ["skipped"] * 3
    assert lake.table().version() == version  # nothing committed
    assert lake.rows().equals(rows)
    assert read_ledger(lake.db) == entries


def test_lake_vacuum_without_apply_lists_the_files_and_deletes_none(tmp_path: Path) -> None:
    lake = Lake(f"delta:///{tmp_path / 'lake'}", str(tmp_path / "lake"))
    subprocess.run(replay(lake.db, _one_day_files(tmp_path), tmp_path), check=True)
    _ok(lake, "optimize")
    files = _data_files(tmp_path / "lake" / "trades")
    replaced = len(files) - len(lake.table().file_uris())
    lines = _ok(lake, "vacuum", "--retention-hours", "0", "--break-time-travel")
    assert lines == [
        f"trades: {replaced} files to delete (unneeded for 0 h); dry run, none deleted",
        "dry run: add --apply to delete them",
    ]
    assert _data_files(tmp_path / "lake" / "trades") == files
    # the version before optimize still reads
    assert DeltaTable(f"{lake.root}/trades", version=1).to_pyarrow_table().num_rows == 2000


def test_lake_vacuum_below_the_tables_retention_without_the_flag_refuses_in_one_line(
    tmp_path: Path,
) -> None:
    lake = Lake(f"delta:///{tmp_path / 'lake'}", str(tmp_path / "lake"))
    subprocess.run(replay(lake.db, _one_day_files(tmp_path), tmp_path), check=True)
    lake.table().alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 2 days"}
    )
    _ok(lake, "optimize")
    files = _data_files(tmp_path / "lake" / "trades")
    assert _refused(lake, "vacuum", "--retention-hours", "47", "--apply") == [
        "error: trades: --retention-hours 47 is shorter than the table's retention (48 h, "
        "delta.deletedFileRetentionDuration): versions older than 47 h could no longer be read",
        "  hint: keep --retention-hours >= 48, or add --break-time-travel",
    ]
    assert _ok(lake, "vacuum", "--apply") == ["trades: 0 files deleted (unneeded for 48 h)"]
    assert _data_files(tmp_path / "lake" / "trades") == files


def test_lake_vacuum_deletes_a_killed_runs_files_only_past_the_retention_and_never_young_ones(
    tmp_path: Path,
) -> None:
    """Data files no commit references: one left by a killed run 8 days ago goes; one of a
    load still writing (just created) stays, even with --retention-hours 0."""
    lake = Lake(f"delta:///{tmp_path / 'lake'}", str(tmp_path / "lake"))
    subprocess.run(replay(lake.db, _one_day_files(tmp_path, 1), tmp_path), check=True)
    day = next((tmp_path / "lake" / "trades").glob("date=*"))
    old, young = day / "part-old.parquet", day / "part-young.parquet"
    old.write_bytes(b"PAR1")
    young.write_bytes(b"PAR1")
    eight_days_ago = time.time() - 8 * 86400
    os.utime(old, (eight_days_ago, eight_days_ago))
    assert _ok(lake, "vacuum", "--retention-hours", "0", "--break-time-travel", "--apply") == [
        "trades: 0 files deleted (unneeded for 0 h)"
    ]
    assert _ok(lake, "vacuum", "--apply") == ["trades: 1 files deleted (unneeded for 168 h)"]
    assert not old.exists()
    assert young.exists()
    assert lake.rows().height == 2000


def test_the_ledger_survives_loads_and_maintenance_when_old_commit_files_expire(
    lake: Lake, tmp_path: Path
) -> None:
    """The ledger lives in the commit history. On a table as an older histetl made it (expired
    commit files cleaned up, here: expired at once), loads and optimize / vacuum still write
    checkpoints but delete no commit file, and the table keeps them from then on."""
    paths = _one_day_files(tmp_path, 4)
    subprocess.run(replay(lake.db, paths[:1], tmp_path), check=True)
    expiring = {
        "delta.enableExpiredLogCleanup": "true",
        "delta.logRetentionDuration": "interval 0 seconds",
        "delta.checkpointInterval": "2",
    }
    lake.table().alter.set_table_properties(expiring, post_commithook_properties=KEEP_LOG)
    subprocess.run(replay(lake.db, paths, tmp_path), check=True)
    _ok(lake, "optimize")
    _ok(lake, "vacuum", "--retention-hours", "0", "--break-time-travel", "--apply")
    subprocess.run(replay(lake.db, paths[-1:], tmp_path), check=True)
    assert sorted(e.path for e in read_ledger(lake.db)) == sorted(map(str, paths))
    assert lake.table().metadata().configuration["delta.enableExpiredLogCleanup"] == "false"


def test_lake_optimize_with_zorder_rewrites_the_files_and_keeps_every_row(
    lake: Lake, tmp_path: Path
) -> None:
    subprocess.run(replay(lake.db, _one_day_files(tmp_path), tmp_path), check=True)
    rows = lake.rows()
    days = rows["date"].n_unique()
    assert _ok(lake, "optimize", "--zorder", "instrument_id, ts_event_ns") == [
        f"trades: {3 * days} files compacted into {days} ({days} partitions)"
    ]
    assert lake.rows().equals(rows)


def test_lake_optimize_by_an_unknown_column_or_table_names_the_allowed_ones(
    tmp_path: Path,
) -> None:
    lake = Lake(f"delta:///{tmp_path / 'lake'}", str(tmp_path / "lake"))
    subprocess.run(replay(lake.db, _one_day_files(tmp_path, 1), tmp_path), check=True)
    (error, hint) = _refused(lake, "optimize", "--zorder", "instrument_id,price_x")
    assert error == "error: --zorder: no column price_x to Z-order trades by"
    assert hint.startswith("  hint: choose from ts_recv, ts_recv_ns, ts_event, ts_event_ns, ")
    assert _refused(lake, "optimize", "--table", "mbp_1") == [
        "error: --table: no table mbp_1 in the lake",
        "  hint: choose from trades",
    ]


@pytest.mark.parametrize("command", ["optimize", "vacuum"])
def test_lake_command_on_a_missing_lake_or_another_target_refuses_in_one_line(
    tmp_path: Path, command: str
) -> None:
    missing = Lake(f"delta:///{tmp_path / 'nolake'}", str(tmp_path / "nolake"))
    assert _refused(missing, command) == [
        f"error: --db: no Delta lake at {tmp_path / 'nolake'}",
        "  hint: load something first (histetl replay / run) or fix the path",
    ]
    assert not (tmp_path / "nolake").exists()
    duck = Lake(f"duckdb:///{tmp_path / 'x.duckdb'}", str(tmp_path / "x.duckdb"))
    assert _refused(duck, command)[0] == (
        "error: --db: histetl lake works on Delta Lake targets only"
    )
    assert not (tmp_path / "x.duckdb").exists()
