"""The Delta Lake target on a local lake: exact values, idempotent reruns, overlaps counted as
duplicates (real CLI subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from deltalake import DeltaTable

from tests.sinks.test_duckdb import replay, trades


def _lake_rows(lake: Path) -> pl.DataFrame:
    df = pl.from_arrow(DeltaTable(str(lake / "trades")).to_pyarrow_table())
    assert isinstance(df, pl.DataFrame)
    return df.sort("ts_event_ns", "instrument_id", "sequence")


def test_replay_into_delta_when_run_twice_equals_duckdb_exactly_and_skips(tmp_path: Path) -> None:
    paths = trades(tmp_path)
    subprocess.run(replay(f"duckdb:///{tmp_path / 'h.duckdb'}", paths, tmp_path), check=True)
    subprocess.run(replay(f"delta:///{tmp_path / 'lake'}", paths, tmp_path), check=True)
    first = _lake_rows(tmp_path / "lake")
    version = DeltaTable(str(tmp_path / "lake" / "trades")).version()
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        ref = con.sql(
            "SELECT epoch_ns(ts_event) AS ts_event_ns, epoch_ns(ts_recv) AS ts_recv_ns, "
            "CAST(price AS VARCHAR) AS price, instrument_id, sequence, size FROM trades "
            "ORDER BY 1, instrument_id, sequence"
        ).pl()
    assert first.height == ref.height == 7000
    assert first["ts_event_ns"].to_list() == ref["ts_event_ns"].to_list()
    assert first["ts_recv_ns"].to_list() == ref["ts_recv_ns"].to_list()
    assert [str(p) for p in first["price"].to_list()] == ref["price"].to_list()
    subprocess.run(replay(f"delta:///{tmp_path / 'lake'}", paths, tmp_path), check=True)
    assert DeltaTable(str(tmp_path / "lake" / "trades")).version() == version
    assert _lake_rows(tmp_path / "lake").equals(first)


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


def test_replay_into_delta_when_deltalake_is_not_installed_says_how_to_install_it(
    tmp_path: Path,
) -> None:
    paths = trades(tmp_path)
    no_lake = "import sys; sys.modules['deltalake'] = None; from histetl.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", no_lake, "replay", str(paths[0]), "--db", "delta:///lake"],
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


@pytest.mark.parametrize("command", [["query", "--schema", "trades"], ["verify"]])
def test_reading_commands_on_a_lake_say_they_do_not_read_lakes_yet(
    tmp_path: Path, command: list[str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "histetl.cli", *command, "--db", "delta:///lake"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "error: --db: query, verify and resample do not read delta:/// lakes yet"
    )


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
