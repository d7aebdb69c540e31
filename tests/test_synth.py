"""Synthesized files through the pipeline and the CLI: real-data shapes and files without
symbology load without quarantine, injected defects are quarantined exactly; `histetl synth`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.source.files import expand_paths
from histetl.synth import Defects, Shapes, SynthSpec, write_dbn
from tests.reference import mismatches
from tests.synth.common import DATABENTO_WARNINGS, UNDEF_PRICE, read

pytestmark = DATABENTO_WARNINGS


def replay_one(tmp_path: Path, path: Path) -> Any:
    options = ReplayOptions(
        db=f"duckdb:///{tmp_path / 'shapes.duckdb'}", quarantine_dir=tmp_path / "quarantine"
    )
    (file,) = Replayer(options).run(expand_paths([path])).files
    return file


def stored(tmp_path: Path, table: str) -> pl.DataFrame:
    with duckdb.connect(str(tmp_path / "shapes.duckdb"), read_only=True) as con:
        frame = pl.from_arrow(con.sql(f"SELECT * FROM {table}").to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


# Real-data classes that were once quarantined: (schema, dataset, symbols, stype_in, shapes)
REAL_SHAPES = {
    "bbo_1s_no_last_trade": ("bbo-1s", "GLBX.MDP3", ("ES.c.0",), "continuous"),
    "bbo_1m_no_last_trade_equities": ("bbo-1m", "XNAS.ITCH", ("AAPL", "MSFT"), "raw_symbol"),
    "cbbo_1s_no_last_trade_options": (
        "cbbo-1s",
        "OPRA.PILLAR",
        ("AAPL  240119C00190000",),
        "raw_symbol",
    ),
    "cbbo_1m_no_last_trade_consolidated": ("cbbo-1m", "EQUS.SUMMARY", ("NVDA",), "raw_symbol"),
    "mbp_1_options_sideless_adds_and_clears": (
        "mbp-1",
        "OPRA.PILLAR",
        ("SPY   240119P00470000",),
        "raw_symbol",
    ),
    "mbp_10_sideless_updates_and_clears": ("mbp-10", "XNAS.ITCH", ("AAPL",), "raw_symbol"),
    "cmbp_1_consolidated_sideless_updates": ("cmbp-1", "EQUS.PLUS", ("TSLA",), "raw_symbol"),
    "mbo_clears_ice": ("mbo", "IFEU.IMPACT", ("BRNH4",), "raw_symbol"),
}

SHAPE_COUNTS = {
    "bbo": Shapes(no_last_trade=7),
    "cbbo": Shapes(no_last_trade=7),
    "mbp": Shapes(sideless_book_updates=9, book_clears=2),
    "cmbp": Shapes(sideless_book_updates=9, book_clears=2),
    "mbo": Shapes(book_clears=3),
}


@pytest.mark.parametrize("case", sorted(REAL_SHAPES))
def test_replay_of_real_data_shape_quarantines_nothing(tmp_path: Path, case: str) -> None:
    schema, dataset, symbols, stype_in = REAL_SHAPES[case]
    shapes = SHAPE_COUNTS[schema.split("-")[0]]
    spec = SynthSpec(
        schema=schema,
        records=600,
        dataset=dataset,
        symbols=symbols,
        stype_in=stype_in,
        seed=4,
        shapes=shapes,
    )
    result = write_dbn(spec, tmp_path / f"{case}.dbn.zst")
    assert mismatches(result.path) == []  # still what databento's own reader sees
    file = replay_one(tmp_path, result.path)
    assert (file.status, file.quarantined, file.duplicates) == ("loaded", 0, 0)
    assert file.loaded == file.records == 600
    assert file.rules == {}
    frame = stored(tmp_path, schema.replace("-", "_"))
    for name, rows in result.shape_rows.items():
        assert len(rows) == shapes.counts()[name]
    if shapes.no_last_trade:
        assert frame.filter(pl.col("ts_event").is_null()).height == shapes.no_last_trade
    sideless = frame.filter((pl.col("side") == "N") & pl.col("price").is_null())
    assert sideless.height == sum(shapes.counts().values())
    if shapes.book_clears:
        assert frame.filter(pl.col("action") == "R").height == shapes.book_clears


@pytest.mark.parametrize("version", [1, 2, 3])
def test_replay_of_file_without_symbology_loads_every_record_with_symbol_null(
    tmp_path: Path, version: int
) -> None:
    spec = SynthSpec(schema="statistics", records=200, version=version, symbology=False, seed=2)
    result = write_dbn(spec, tmp_path / f"nosym-v{version}.dbn")
    store, _ = read(result.path)
    assert not store.metadata.mappings
    assert mismatches(result.path) == []
    file = replay_one(tmp_path, result.path)
    assert (file.status, file.loaded, file.quarantined) == ("loaded", 200, 0)
    assert file.rules == {"symbol_present": 200}  # counted, a warning
    assert stored(tmp_path, "statistics")["symbol"].null_count() == 200


def test_replay_of_shaped_file_still_quarantines_exactly_the_injected_defects(
    tmp_path: Path,
) -> None:
    spec = SynthSpec(
        schema="mbp-1",
        records=800,
        dataset="OPRA.PILLAR",
        symbols=("AAPL  240119C00190000",),
        stype_in="raw_symbol",
        seed=8,
        shapes=Shapes(sideless_book_updates=20, book_clears=4),
        defects=Defects(missing_price=6, zero_size=5, bad_timestamp=2, crossed_quotes=3),
    )
    result = write_dbn(spec, tmp_path / "shaped.dbn.zst")
    file = replay_one(tmp_path, result.path)
    bad = {
        int(r)
        for name in ("missing_price", "zero_size", "bad_timestamp")
        for r in result.defect_rows[name]
    }
    assert file.quarantined == len(bad) == 13
    assert file.loaded == 800 - 13
    assert file.rules == {
        "event_price_present": 6,
        "event_size_positive": 5,
        "index_ts_in_file_range": 2,
        "quote_not_crossed": 3,  # a warning: crossed books occur on real venues
    }
    assert file.quarantine_file is not None
    quarantined = pl.read_parquet(file.quarantine_file)
    assert set(quarantined["ordinal"].to_list()) == bad
    shaped = {int(r) for rows in result.shape_rows.values() for r in rows}
    assert not shaped & bad


def test_synth_command_writes_shapes_and_files_without_symbology(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "histetl.cli"]
    book = tmp_path / "opra.mbp-1.dbn"
    stats = tmp_path / "nosym.statistics.dbn"
    shaped = ["--dataset", "OPRA.PILLAR", "--symbols", "AAPL  240119C00190000"]
    shaped += ["--stype-in", "raw_symbol", "--shape", "sideless_book_updates=6"]
    shaped += ["--shape", "book_clears=2"]
    for args in (
        [str(book), "--schema", "mbp-1", "--records", "300", *shaped],
        [str(stats), "--schema", "statistics", "--records", "40", "--no-symbology"],
    ):
        done = subprocess.run([*cli, "synth", *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    _, arr = read(book)
    assert ((arr["side"] == b"N") & (arr["price"] == UNDEF_PRICE)).sum() == 8
    assert (arr["action"] == b"R").sum() == 2
    store, _ = read(stats)
    assert not store.metadata.mappings
    report = tmp_path / "report.json"
    db = f"duckdb:///{tmp_path / 'c.duckdb'}"
    out = ["--quarantine-dir", str(tmp_path / "q"), "--report", str(report)]
    done = subprocess.run(
        [*cli, "replay", str(book), str(stats), "--db", db, *out],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "q").exists() or not any((tmp_path / "q").rglob("*.parquet"))
    bad = subprocess.run(
        [*cli, "synth", str(tmp_path / "x.dbn"), "--schema", "bbo-1s", "--shape", "nope=1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "--shape 'nope=1': expected NAME=COUNT" in bad.stderr
    assert "Traceback" not in bad.stderr
