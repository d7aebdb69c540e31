"""Decode: histetl (DBN -> Arrow, plus map and validate) vs databento's DBNStore readers."""

from __future__ import annotations

from pathlib import Path

import pytest
from databento import DBNStore

from benchmarks.conftest import ROWS
from benchmarks.probe import zstd
from histetl.decode import DbnFile
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.symbology import SymbolMap

# DBNStore.from_file leaves its file handle to the garbage collector: not ours to fix.
pytestmark = [
    pytest.mark.benchmark(group="decode"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <_io.FileIO:pytest.PytestUnraisableExceptionWarning"
    ),
]


def _decode_map(path: Path) -> int:
    rows = 0
    with DbnFile(path) as dbn:
        symbols = SymbolMap.from_metadata(dbn.metadata, str(path))
        for batch in dbn.batches():
            symbols.resolve(batch.column("instrument_id"), batch.column(dbn.spec.index_ts))
            rows += batch.num_rows
    return rows


@pytest.mark.parametrize("compressed", [False, True], ids=["dbn", "dbn.zst"])
def test_histetl_validate_only(
    benchmark, trades: Path, trades_zst: Path, tmp_path: Path, compressed: bool
) -> None:
    replayer = Replayer(ReplayOptions(validate_only=True, quarantine_dir=tmp_path))
    path = trades_zst if compressed else trades
    report = benchmark.pedantic(replayer.run, args=([path],), rounds=3)
    assert report.totals["records"] == ROWS


def test_histetl_decode_and_map(benchmark, trades: Path) -> None:
    assert benchmark.pedantic(_decode_map, args=(trades,), rounds=3) == ROWS


@pytest.mark.parametrize("price_type", ["fixed", "decimal"])
def test_databento_to_df(benchmark, trades: Path, price_type: str) -> None:
    def to_df() -> int:
        return len(DBNStore.from_file(trades).to_df(price_type=price_type, map_symbols=True))

    assert benchmark.pedantic(to_df, rounds=3) == ROWS


def test_databento_to_ndarray(benchmark, trades: Path) -> None:
    def to_ndarray() -> int:
        return len(DBNStore.from_file(trades).to_ndarray())

    assert benchmark.pedantic(to_ndarray, rounds=3) == ROWS


def test_zstd_decompression_alone(benchmark, trades_zst: Path) -> None:
    assert benchmark.pedantic(zstd, args=(str(trades_zst),), rounds=3)["bytes"] > 0
