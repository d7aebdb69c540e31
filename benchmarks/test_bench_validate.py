"""Validation throughput of the full built-in rule set (decoded frames in memory)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from benchmarks.conftest import ROWS
from histetl.decode import DbnFile
from histetl.schemas import SYMBOL_COLUMN
from histetl.symbology import SymbolMap
from histetl.validate import RuleBook, RuleSet

pytestmark = pytest.mark.benchmark(group="validate", min_rounds=5)


def _frames(path: Path) -> tuple[list[pl.DataFrame], RuleSet]:
    frames = []
    with DbnFile(path) as dbn:
        symbols = SymbolMap.from_metadata(dbn.metadata, str(path))
        for batch in dbn.batches():
            symbol = symbols.resolve(batch.column("instrument_id"), batch.column(dbn.spec.index_ts))
            frame = pl.from_arrow(batch.append_column(SYMBOL_COLUMN, symbol))
            assert isinstance(frame, pl.DataFrame)
            frames.append(frame)
        meta = dbn.metadata
        rules = RuleBook.load().for_file(dbn.spec, dbn.dataset, meta.start, meta.end)
    return frames, rules


@pytest.mark.parametrize("schema", ["trades", "mbp1"])
def test_full_rule_set(benchmark, request: pytest.FixtureRequest, schema: str) -> None:
    frames, rules = _frames(request.getfixturevalue(schema))

    def split_all() -> int:
        valid = 0
        for frame in frames:
            valid += rules.split(frame, first_ordinal=0).valid.height
        return valid

    assert benchmark(split_all) == ROWS
    if benchmark.stats:  # None with --benchmark-disable
        benchmark.extra_info["rows_per_s"] = ROWS / benchmark.stats.stats.median
