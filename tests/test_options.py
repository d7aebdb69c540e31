"""histetl.options: a replay's options, checked before any file is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from histetl.config import DEFAULT_BATCH_SIZE
from histetl.errors import ConfigError
from histetl.options import MAX_BATCH_SIZE, ReplayOptions


def test_defaults_take_the_target_from_histetl_db_when_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HISTETL_DB", "duckdb:///first.duckdb")
    first = ReplayOptions()
    monkeypatch.setenv("HISTETL_DB", "duckdb:///second.duckdb")
    assert first.db == "duckdb:///first.duckdb"
    assert ReplayOptions().db == "duckdb:///second.duckdb"
    assert first.batch_size == DEFAULT_BATCH_SIZE == 100_000
    assert (first.workers, first.cluster, first.on_invalid) == (1, None, "quarantine")


@pytest.mark.parametrize("size", [1, MAX_BATCH_SIZE])
def test_batch_sizes_at_the_limits_are_accepted(size: int, tmp_path: Path) -> None:
    ReplayOptions(batch_size=size, quarantine_dir=tmp_path / "q").check()
    assert not (tmp_path / "q").exists()  # checked, not created


@pytest.mark.parametrize("size", [0, MAX_BATCH_SIZE + 1])
def test_batch_size_out_of_range_names_the_option_the_range_and_the_default(
    size: int, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as caught:
        ReplayOptions(batch_size=size, quarantine_dir=tmp_path).check()
    assert caught.value.message == (
        f"--batch-size: batch size {size:,} is out of range: allowed 1 to 10,000,000 records\n"
        "  hint: the default, 100,000, is fast; memory grows with the size"
    )


def test_workers_below_one_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        ReplayOptions(workers=0, quarantine_dir=tmp_path).check()
    assert caught.value.message == "--workers: workers must be at least 1"


def test_a_quarantine_folder_that_is_a_file_is_refused_naming_the_option(tmp_path: Path) -> None:
    taken = tmp_path / "quarantine"
    taken.write_text("a file")
    with pytest.raises(ConfigError) as caught:
        ReplayOptions(quarantine_dir=taken / "sub").check()
    assert caught.value.where == "--quarantine-dir"
    assert caught.value.what == f"cannot create {taken / 'sub'}: {taken} is not a folder"
