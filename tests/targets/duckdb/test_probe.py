"""histetl.targets.duckdb.probe: the pre-check's read-only lookup in a DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from histetl.targets.duckdb.probe import ledger_rows


def test_rows_come_from_the_file_read_only(tmp_path: Path) -> None:
    path = tmp_path / "l.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE histetl_ledger AS SELECT 'ab' AS sha256, 7 AS records")

    assert ledger_rows(str(path), "SELECT sha256, records FROM histetl_ledger") == [("ab", 7)]
    with pytest.raises(duckdb.Error, match="read-only"):
        ledger_rows(str(path), "DELETE FROM histetl_ledger")
    with duckdb.connect(str(path)) as con:  # closed again: a writer gets the file
        assert con.execute("SELECT count(*) FROM histetl_ledger").fetchone() == (1,)


def test_a_file_not_made_yet_has_no_rows_and_stays_unmade(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "later.duckdb"

    assert ledger_rows(str(path), "SELECT 1") == []
    assert not path.parent.exists()


def test_a_memory_database_cannot_be_asked() -> None:
    assert ledger_rows(":memory:", "SELECT 1") is None
