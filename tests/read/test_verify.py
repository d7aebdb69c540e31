"""`histetl verify`: passes on a clean load, fails (exit 1) on a deliberately corrupted one with
each check naming what it found (the calendars and range arithmetic behind the gap check are in
tests/read/test_calendars.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from loguru import logger

from histetl.read.resample import ResampleOptions, resample
from histetl.read.verify import VerifyOptions, verify
from tests.read.test_query import ES_H4, histetl, load, write_files

STATUSES = ("PASS", "FAIL", "WARN", "SKIP")


@pytest.fixture(autouse=True)
def _reset_logs() -> Iterator[None]:
    yield
    logger.remove()


@pytest.fixture(scope="module")
def clean_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Full-grid ES.c.0 1-minute bars, ES.FUT definitions and trades, and 5m bars derived."""
    root = tmp_path_factory.mktemp("verify")
    paths = write_files(root / "raw")
    path = root / "clean.duckdb"
    load(f"duckdb:///{path}", list(paths.values()), root / "quarantine")
    resample(ResampleOptions(db=f"duckdb:///{path}", interval="5m"))
    return path


@pytest.fixture
def db(clean_db: Path, tmp_path: Path) -> Path:
    """A private copy to corrupt."""
    return Path(shutil.copy(clean_db, tmp_path / "db.duckdb"))


def corrupt(path: Path, *statements: str) -> None:
    with duckdb.connect(str(path)) as con:
        for sql in statements:
            con.execute(sql)


def statuses(path: Path, **options: object) -> dict[tuple[str, str], str]:
    report = verify(VerifyOptions(db=f"duckdb:///{path}", **options))  # type: ignore[arg-type]
    return {(c.name, c.table): c.status for c in report.checks}


DELETE_BAR = "DELETE FROM ohlcv_1m WHERE ts_event = '2023-12-13 15:07:00+00'"
BREAK_BAR = "UPDATE ohlcv_1m SET high = low - 1 WHERE ts_event = '2023-12-14 10:00:00+00'"
SECOND_BAR = (
    "INSERT INTO ohlcv_1m SELECT ts_event, rtype, publisher_id, instrument_id, open, high, low, "
    "close + 0.25, volume, record_hash + 1, symbol FROM ohlcv_1m "
    "WHERE ts_event = '2023-12-12 12:00:00+00'"
)
UNKNOWN_TRADE = (
    "INSERT INTO trades SELECT ts_recv, ts_event, rtype, publisher_id, 4242, action, side, "
    "depth, price, size, flags, ts_in_delta, sequence, record_hash, 'XYZH4' FROM trades LIMIT 1"
)


def test_verify_passes_on_a_clean_load(db: Path) -> None:
    result = histetl("verify", "--db", f"duckdb:///{db}", "--report", db.with_suffix(".json"))

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL")]
    for check in ("duplicates", "rules", "ledger", "gaps"):
        assert any(line.startswith(f"PASS  {check}") and "ohlcv_1m" in line for line in lines)
    assert any(line.startswith("PASS  gaps") and "ohlcv_5m" in line for line in lines)
    assert "PASS  definitions" in result.stdout
    assert json.loads(db.with_suffix(".json").read_text())["failed"] == 0


def test_verify_fails_on_a_corrupted_load_naming_each_problem(db: Path) -> None:
    corrupt(db, DELETE_BAR, BREAK_BAR, SECOND_BAR, UNKNOWN_TRADE)

    result = histetl("verify", "--db", f"duckdb:///{db}")

    assert result.exit_code == 1, result.output
    out = result.stdout
    rows = {tuple(line.split()[:3]): line for line in out.splitlines() if line[:4] in STATUSES}
    assert (
        "one bar per instrument, publisher and time: 1 key(s), 1 extra row(s)"
        in (rows["FAIL", "duplicates", "ohlcv_1m"])
    )
    assert "high_ge_open_close_low: 1" in rows["FAIL", "rules", "ohlcv_1m"]
    assert "2023-12-14 10:00:00+00:00 ES.c.0 (140352): high_ge_open_close_low" in out
    assert ("PASS", "ledger", "ohlcv_1m") in rows  # one bar deleted, one added: same count
    assert "2001 rows but the ledger accounts for at most 2000" in rows["FAIL", "ledger", "trades"]
    assert "1 bar(s) missing inside sessions in 1 hole(s)" in rows["FAIL", "gaps", "ohlcv_1m"]
    assert "ES.c.0 (140352): 1 missing between 2023-12-13T15:06:00Z and 2023-12-13T15:08:00Z" in out
    assert "1 instrument(s) without a definition" in rows["FAIL", "definitions", "-"]
    assert "XYZH4 (4242) in trades" in out
    assert len([r for r in rows if r[0] == "FAIL"]) == 5
    assert "Traceback" not in result.output


def test_verify_ledger_counts_a_deleted_row_as_missing(db: Path) -> None:
    corrupt(db, DELETE_BAR)

    report = verify(VerifyOptions(db=f"duckdb:///{db}", checks=("ledger",)))

    (failed,) = report.failed
    assert failed.table == "ohlcv_1m"
    assert "4139 rows but the ledger says 4140 were loaded: 1 missing" in failed.detail


def test_verify_gap_check_ignores_small_holes_with_min_gap(db: Path) -> None:
    corrupt(db, DELETE_BAR)

    assert statuses(db, checks=("gaps",))[("gaps", "ohlcv_1m")] == "FAIL"
    assert statuses(db, checks=("gaps",), min_gap=2)[("gaps", "ohlcv_1m")] == "PASS"


def test_verify_gap_check_uses_the_given_calendar(db: Path, tmp_path: Path) -> None:
    always_open = tmp_path / "always.yaml"
    always_open.write_text(
        "timezone: UTC\nsessions:\n"
        "  - {days: [mon, tue, wed, thu, fri, sat, sun], open: '00:00', close: '00:00'}\n"
    )

    report = verify(
        VerifyOptions(
            db=f"duckdb:///{db}", checks=("gaps",), tables=("ohlcv_1m",), calendar=str(always_open)
        )
    )

    (check,) = report.checks
    assert check.status == "FAIL"  # the daily CME halt has no bars
    assert "180 bar(s) missing inside sessions in 3 hole(s)" in check.detail  # 3 days


def test_verify_gap_check_follows_status_messages_when_loaded(db: Path) -> None:
    """ESH4 halted from 15:00 to 15:30 on the 13th: the missing bars there are no gap; the
    instrument closing for the day at 21:00 (an hour early) is not one either."""
    corrupt(
        db,
        "DELETE FROM ohlcv_1m WHERE ts_event >= '2023-12-13 15:00:00+00' "
        "AND ts_event < '2023-12-13 15:30:00+00'",
        "CREATE TABLE status AS SELECT * FROM (VALUES "
        "(TIMESTAMPTZ '2023-12-13 00:00:00+00', 7, 'Y'), "
        "(TIMESTAMPTZ '2023-12-13 15:00:00+00', 8, 'N'), "
        "(TIMESTAMPTZ '2023-12-13 15:30:00+00', 7, '~'), "
        "(TIMESTAMPTZ '2023-12-13 21:00:00+00', 12, 'N'), "
        "(TIMESTAMPTZ '2023-12-13 23:00:00+00', 7, 'Y'), "
        "(TIMESTAMPTZ '2023-12-14 22:00:00+00', 12, 'N')) "
        f"v(ts_event, action, is_trading), (SELECT {ES_H4} AS instrument_id)",
    )

    with_status = verify(VerifyOptions(db=f"duckdb:///{db}", checks=("gaps",)))
    calendar_only = verify(VerifyOptions(db=f"duckdb:///{db}", checks=("gaps",), use_status=False))

    assert not with_status.failed, with_status.text()
    assert [c.table for c in calendar_only.failed] == ["ohlcv_1m"]  # 5m: not resampled since


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--table", "ohlcv-2m"], "no loaded table 'ohlcv-2m' (close matches: ohlcv_"),
        (["--calendar", "lse"], "unknown calendar 'lse'"),
        (["--start", "tomorrow"], "--start: cannot read 'tomorrow'"),
    ],
)
def test_verify_bad_input_exits_2_naming_the_culprit(
    clean_db: Path, args: list[str], message: str
) -> None:
    result = histetl("verify", "--db", f"duckdb:///{clean_db}", *args)

    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_verify_with_a_time_range_skips_the_ledger_and_checks_only_that_range(db: Path) -> None:
    corrupt(db, DELETE_BAR)

    inside = statuses(db, start="2023-12-13", end="2023-12-14")
    outside = statuses(db, start="2023-12-14")

    assert inside[("gaps", "ohlcv_1m")] == "FAIL"
    assert inside[("ledger", "ohlcv_1m")] == "SKIP"
    assert outside[("gaps", "ohlcv_1m")] == "PASS"
