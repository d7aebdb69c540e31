"""histetl.read.checks: each check of `histetl verify` on its own, over a real DuckDB load:
the branches and exact messages the end-to-end tests in tests/read/test_verify.py don't reach."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.read.checks import (
    Check,
    Context,
    LedgerTotals,
    _dataset,
    bar_interval,
    definitions_check,
    duplicates_check,
    gaps_check,
    ledger_check,
    rules_check,
)
from histetl.read.database import Database
from histetl.read.verify import VerifyOptions
from histetl.schemas import table_spec
from histetl.synth import Defects, SynthSpec, write_dbn
from histetl.validate import RuleBook

TRADES = table_spec("trades")
BARS = table_spec("ohlcv-1m")


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("checks")
    files = []
    for spec in (
        SynthSpec("trades", 300, seed=3),
        SynthSpec("ohlcv-1m", 200, seed=4),
        SynthSpec("mbp-1", 300, seed=5, defects=Defects(crossed_quotes=2)),
    ):
        files.append(root / f"{spec.schema}.dbn")
        write_dbn(spec, files[-1])
    path = root / "clean.duckdb"
    options = ReplayOptions(db=f"duckdb:///{path}", quarantine_dir=root / "q")
    report = Replayer(options).run(files)
    assert not report.failed
    assert report.totals["quarantined"] == 0  # crossed quotes warn
    return path


@pytest.fixture
def path(clean: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(clean, tmp_path / "db.duckdb"))


@pytest.fixture
def db(path: Path) -> Iterator[Database]:
    with Database.open(f"duckdb:///{path}") as database:
        yield database


def context(
    db: Database, ledger: dict[str, LedgerTotals] | None = None, **options: object
) -> Context:
    start = options.pop("start", None)
    verify = VerifyOptions(db="unused", **options)  # type: ignore[arg-type]
    return Context(db, verify, start, None, ledger or {})  # type: ignore[arg-type]


def changed(path: Path, *statements: str) -> Database:
    """The database at `path` after `statements` (run before the reader opens it)."""
    with duckdb.connect(str(path)) as con:
        for sql in statements:
            con.execute(sql)
    return Database.open(f"duckdb:///{path}")


@pytest.mark.parametrize(
    ("table", "interval"),
    [
        ("ohlcv_1m", 60 * 10**9),
        ("ohlcv_5m", 300 * 10**9),
        ("ohlcv_4h", 4 * 3600 * 10**9),
        ("ohlcv_1s", None),  # below a minute: no gap check
        ("ohlcv_1d", None),  # daily bars: sessions, not intervals
        ("trades", None),
        ("ohlcv_1m_mapped", None),
    ],
)
def test_bar_interval(table: str, interval: int | None) -> None:
    assert bar_interval(table) == interval


@pytest.mark.parametrize(
    ("count_in_ledger", "status", "detail"),
    [
        (LedgerTotals(300, 300), "PASS", "300 rows, as the ledger says"),
        (
            LedgerTotals(250, 320),
            "PASS",
            "300 rows; ledger: 250 loaded + up to 70 reloaded with --force",
        ),
        (
            LedgerTotals(310, 310),
            "FAIL",
            "300 rows but the ledger says 310 were loaded: 10 missing (deleted outside histetl, "
            "or dropped by a retention policy)",
        ),
        (
            LedgerTotals(200, 290),
            "FAIL",
            "300 rows but the ledger accounts for at most 290: 10 rows were written outside "
            "histetl",
        ),
        (None, "FAIL", "300 rows but the ledger accounts for at most 0: 300 rows were"),
    ],
)
def test_ledger_check_compares_the_row_count_with_the_ledger(
    db: Database, count_in_ledger: LedgerTotals | None, status: str, detail: str
) -> None:
    ledger = {"trades": count_in_ledger} if count_in_ledger else {}

    check = ledger_check(context(db, ledger), "trades")

    assert (check.name, check.table, check.status) == ("ledger", "trades", status)
    assert check.detail.startswith(detail)


def test_ledger_check_is_skipped_for_a_time_range(db: Database) -> None:
    check = ledger_check(context(db, start=0), "trades")

    assert check == Check(
        "ledger", "trades", "SKIP", "not with --start/--end (the ledger counts whole files)"
    )


def test_duplicates_check_names_the_primary_key_and_an_example(path: Path) -> None:
    with changed(path, "INSERT INTO trades SELECT * FROM trades ORDER BY ts_recv LIMIT 2") as db:
        check = duplicates_check(context(db), "trades", TRADES)

    assert check.status == "FAIL"
    assert check.detail == "primary key: 2 key(s), 2 extra row(s)"
    assert len(check.examples) == 2
    assert re.fullmatch(
        r"primary key \(ts_recv, instrument_id, record_hash\) = "
        r"\(2023-12-14T\d\d:\d\d:\d\d\.\d{9}Z, 760552, -?\d+\): 2 rows",
        check.examples[0],
    )


def test_duplicates_and_rules_checks_skip_a_mapped_table(path: Path) -> None:
    mapped = "CREATE TABLE renamed AS SELECT ts_recv AS t, price AS px FROM trades"
    with changed(path, mapped) as db:
        duplicates = duplicates_check(context(db), "renamed", TRADES)
        check = rules_check(context(db), "renamed", TRADES, RuleBook.load(()))

    assert duplicates == Check(
        "duplicates",
        "renamed",
        "SKIP",
        "no ts_recv, instrument_id, record_hash columns (mapped table?)",
    )
    assert check == Check("rules", "renamed", "SKIP", "not the canonical columns (mapped table?)")


def test_rules_check_passes_warns_and_fails_with_counts(path: Path, db: Database) -> None:
    book = RuleBook.load(())

    clean = rules_check(context(db), "trades", TRADES, book)
    crossed = rules_check(context(db), "mbp_1", table_spec("mbp-1"), book)
    db.close()
    zero = "UPDATE trades SET size = 0 WHERE ts_recv = (SELECT min(ts_recv) FROM trades)"
    with changed(path, zero) as changed_db:
        broken = rules_check(context(changed_db), "trades", TRADES, book)

    assert clean == Check("rules", "trades", "PASS", "300 rows, no rule broken")
    assert crossed == Check(
        "rules", "mbp_1", "WARN", "300 rows; warn rules broken (quote_not_crossed: 2)"
    )
    assert broken.status == "FAIL"
    assert broken.detail == "1 of 300 rows break error rules (size_positive: 1)"
    assert broken.examples[0].endswith("ES.c.0 (760552): size_positive")


def test_gaps_check_without_a_calendar_for_the_dataset_is_skipped(db: Database) -> None:
    unknown = gaps_check(context(db), "ohlcv_1m", BARS)
    opra = context(db, {"ohlcv_1m": LedgerTotals(200, 200, ("OPRA.PILLAR",))})

    assert unknown.detail == "no calendar for dataset(s) unknown; pass --calendar"
    assert gaps_check(opra, "ohlcv_1m", BARS).detail == (
        "no calendar for dataset(s) OPRA.PILLAR; pass --calendar"
    )
    assert unknown.status == "SKIP"


def test_definitions_check_without_definitions_is_skipped(db: Database) -> None:
    check = definitions_check(context(db), {"trades": TRADES})

    assert check == Check("definitions", "", "SKIP", "no definitions loaded")


@pytest.mark.parametrize(
    ("publisher", "fallback", "dataset"),
    [
        (1, "", "GLBX.MDP3"),
        (2, "GLBX.MDP3", "XNAS.ITCH"),  # the publisher wins over the ledger's dataset
        (65_000, "XNAS.ITCH", "XNAS.ITCH"),  # unknown publisher: the fallback
        (None, "IFEU.IMPACT", "IFEU.IMPACT"),  # no publisher column
    ],
)
def test_rules_use_the_dataset_of_each_rows_publisher(
    publisher: int | None, fallback: str, dataset: str
) -> None:
    assert _dataset(publisher, fallback) == dataset
