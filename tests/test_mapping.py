"""The column mapping: a derive or cast that compiles but fails on a file's data fails THAT file
(naming the mapping key and the file, nothing of it loaded) and the other files still load."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from histetl.errors import ConfigError
from histetl.mapping import Mapping
from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.report import RunReport
from histetl.source.files import expand_paths
from histetl.synth import SynthSpec, write_dbn


def files(tmp_path: Path) -> list[Path]:
    out = []
    for schema in ("trades", "ohlcv-1m"):
        path = tmp_path / "raw" / f"{schema}.dbn"
        path.parent.mkdir(exist_ok=True)
        write_dbn(SynthSpec(schema=schema, records=80), path)
        out.append(path)
    return out


def replay_with(tmp_path: Path, mapping: str) -> RunReport:
    mapping_file = tmp_path / "mapping.yaml"
    mapping_file.write_text(mapping)
    options = ReplayOptions(
        db=f"duckdb:///{tmp_path / 'h.duckdb'}",
        quarantine_dir=tmp_path / "q",
        mapping_file=mapping_file,
    )
    return Replayer(options).run(expand_paths(files(tmp_path)))


def tables(tmp_path: Path) -> dict[str, int]:
    with duckdb.connect(str(tmp_path / "h.duckdb"), read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return {
            n: int(con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0])  # type: ignore[index]
            for n in names
            if not n.startswith("_")
        }


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        ("tables:\n  trades:\n    cast: {sequence: Int8}\n", "tables.trades.cast.sequence"),
        (
            "tables:\n  trades:\n    derive: {n: 'CAST(symbol AS INT)'}\n",
            "tables.trades.derive.n",
        ),
        (
            "tables:\n  trades:\n    derive: {n: 'CAST(symbol AS INT)'}\n    cast: {size: Int8}\n",
            "tables.trades.derive.n",
        ),
    ],
)
def test_mapping_that_fails_only_on_the_data_fails_that_file_and_the_others_load(
    tmp_path: Path, mapping: str, key: str
) -> None:
    report = replay_with(tmp_path, mapping)

    trades, bars = report.files
    assert trades.status == "failed"
    assert trades.loaded == 0
    assert trades.error is not None
    assert key in trades.error
    assert str(trades.path) in trades.error
    assert "nothing from this file was loaded" in trades.error
    assert (bars.status, bars.loaded) == ("loaded", 80)
    loaded = tables(tmp_path)
    assert loaded.get("trades", 0) == 0
    assert loaded["ohlcv_1m"] == 80


def test_mapping_that_cannot_compile_fails_before_any_work(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("tables:\n  trades:\n    derive: {n: 'symbol / symbol'}\n")
    with pytest.raises(ConfigError, match=r"tables\.trades"):
        Mapping.load(path)
