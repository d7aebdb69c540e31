"""What a Delta load keeps on disk instead of in memory: the keys of a file's new rows past a
threshold (`KeyLog`), and a load whose in-file duplicates lie across that threshold, in and out
of time order (counted, not stored)."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl
import pytest

from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.targets import read_ledger
from histetl.targets.delta.sink import DeltaSink
from histetl.targets.delta.spill import KeyLog
from tests.targets.delta.test_sink import Lake
from tests.targets.duckdb.test_sink import trades

_SCHEMA = pl.Schema({"ts": pl.Int64, "id": pl.UInt32})


def test_key_log_past_its_threshold_holds_few_keys_and_finds_every_key_of_a_span() -> None:
    rng = random.Random(7)
    added = [(rng.randrange(1000), i) for i in range(500)]  # out of time order
    log = KeyLog("ts", in_memory=16)
    try:
        for start in range(0, len(added), 7):
            ts, ids = zip(*added[start : start + 7], strict=True)
            log.add(pl.DataFrame({"ts": ts, "id": ids}, schema=_SCHEMA))
            assert log.held < 16
        assert log.on_disk > 10  # most keys are in runs on disk
        every = pl.DataFrame(added, schema=_SCHEMA, orient="row")
        for low, high in ((0, 999), (100, 100), (250, 600), (998, 2000), (-5, -1)):
            frames = list(log.between(low, high))
            assert all(frame.height < 16 + 7 for frame in frames)  # a run of one flush at most
            found = pl.concat(frames or [pl.DataFrame(schema=_SCHEMA)]).sort("ts", "id")
            expected = every.filter(pl.col("ts").is_between(low, high)).sort("ts", "id")
            assert found.equals(expected)
    finally:
        log.close()


def test_key_log_refuses_a_threshold_below_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        KeyLog("ts", in_memory=0)


def _repeated(plain: Path, out: Path, reverse: bool) -> Path:
    """`plain`'s records, then all of them again (reversed: out of time order)."""
    data = plain.read_bytes()
    head = 8 + int.from_bytes(data[4:8], "little")
    records = [data[i : i + 48] for i in range(head, len(data), 48)]
    assert b"".join(records) == data[head:]  # trades: 48 bytes a record
    again = records[::-1] if reverse else records
    out.write_bytes(data[:head] + b"".join(records + again))
    return out


@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reversed"])
def test_delta_load_when_in_file_duplicates_lie_past_the_key_threshold_counts_them_once(
    tmp_path: Path, reverse: bool
) -> None:
    """Batches of 100 rows and 150 keys in memory: the repeats are found in the runs on disk
    (and, reversed, every batch spans runs written long before), counted as duplicates and not
    stored; the lake equals a load of the plain file."""
    plain = trades(tmp_path)[0]  # 2000 trades
    repeated = _repeated(plain, tmp_path / "repeated.dbn", reverse)
    options = ReplayOptions(quarantine_dir=tmp_path / "q", batch_size=100)
    lakes = []
    for path, name in ((plain, "clean"), (repeated, "lake")):
        lake = Lake(f"delta:///{tmp_path / name}", str(tmp_path / name))
        options.db = lake.db
        report = Replayer(options).process(path, DeltaSink(lake.db, keys_in_memory=150))
        assert report.status == "loaded", report.error
        lakes.append(lake)
    clean, lake = lakes
    assert (report.records, report.loaded, report.duplicates) == (4000, 2000, 2000)
    assert lake.rows().equals(clean.rows())
    (entry,) = read_ledger(lake.db)
    assert (entry.records, entry.loaded, entry.duplicates) == (4000, 2000, 2000)
