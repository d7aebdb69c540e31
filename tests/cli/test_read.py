"""histetl.cli.read: what the read commands add over the library (their own checks before any
work, messages on stderr, the quarantine listing and sample). The library behind query, verify,
resample and report is tested in tests/read/ and tests/quality/."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from histetl.cli import main
from histetl.synth import SynthSpec, write_dbn
from tests.cli.conftest import HISTETL


def histetl(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def loaded(trades_dbn: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """trades_dbn replayed into tmp_path/h.duckdb (quarantine under tmp_path/quarantine)."""
    monkeypatch.chdir(tmp_path)
    db = f"duckdb:///{tmp_path / 'h.duckdb'}"
    assert histetl("replay", trades_dbn, "--db", db).exit_code == 0
    return db


def test_query_to_a_file_writes_every_row_and_says_so_on_stderr(
    loaded: str, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "trades.csv"
    result = histetl("query", "--db", loaded, "--schema", "trades", "--format", "csv", "-o", out)
    assert result.exit_code == 0, result.output
    assert (result.stdout, result.stderr) == ("", f"wrote 298 rows to {out}\n")
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 298
    assert {"ts_recv", "price", "size", "instrument_id"} <= set(rows[0])


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["PYTHONUNBUFFERED", "buffered"])
@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_query_to_a_full_disk_on_stdout_fails_in_one_line(
    loaded: str, tmp_path: Path, fmt: str, unbuffered: str
) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    with open("/dev/full", "wb") as full:  # every write: ENOSPC
        done = subprocess.run(
            [*HISTETL, "query", "--db", loaded, "--schema", "trades", "--format", fmt],
            stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(
        "error: query: cannot write the rows to stdout: No space left on device"
    ), done.stderr
    assert done.stderr.count("\n") == 2  # the error and its hint: no traceback, no noise


def test_ctrl_c_during_a_query_exits_130_in_one_line(tmp_path: Path) -> None:
    dbn = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=20_000), dbn)
    db = f"duckdb:///{tmp_path / 'h.duckdb'}"
    assert histetl("replay", dbn, "--db", db).exit_code == 0
    query = subprocess.Popen(
        [*HISTETL, "query", "--db", db, "--schema", "trades", "--format", "csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert query.stdout is not None
    assert query.stdout.read(1000)  # it writes; the pipe fills up and the write blocks
    time.sleep(0.5)
    query.send_signal(signal.SIGINT)
    _out, err = query.communicate(timeout=60)
    assert (query.returncode, err.decode()) == (130, "error: interrupted by SIGINT\n")


def test_query_to_a_path_under_a_file_is_refused_before_reading(
    loaded: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("a file")
    out = tmp_path / "notes.txt" / "x.csv"
    result = histetl("query", "--db", loaded, "--schema", "trades", "-o", out)
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: -o: cannot use {out}: Not a directory\n",
    )


def test_resample_with_a_table_and_two_intervals_is_refused_before_any_work(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.duckdb"
    args = ["--interval", "5m", "--interval", "15m", "--table", "bars"]
    result = histetl("resample", "--db", f"duckdb:///{db}", *args)
    assert (result.exit_code, result.stderr) == (
        2,
        "error: --table: --table needs a single --interval\n",
    )
    assert not db.exists()


def test_quarantine_without_files_says_where_it_looked(tmp_path: Path) -> None:
    result = histetl("quarantine", "--quarantine-dir", tmp_path / "none")
    assert (result.exit_code, result.stdout) == (
        0,
        f"no quarantine files under {tmp_path / 'none'}\n",
    )


def test_quarantine_of_a_file_shows_the_rule_counts_its_source_and_a_sample(
    loaded: str, trades_dbn: Path, tmp_path: Path
) -> None:
    (qfile,) = (tmp_path / "quarantine").rglob("*.parquet")
    result = histetl("quarantine", qfile, "--rows", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["2", "size_positive"]
    assert f"source: {trades_dbn.resolve()}" in lines
    assert "shape: (1, " in result.stdout  # one sample row, the source column dropped
