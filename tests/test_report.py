"""The run report: counts that must reconcile, totals, the terminal table and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from histetl.errors import ReconciliationError
from histetl.report import FileReport, RunReport, display_names


def test_a_file_whose_counts_do_not_add_up_is_a_reconciliation_error() -> None:
    report = FileReport("a.dbn", records=10, loaded=6, duplicates=2, quarantined=1)
    with pytest.raises(ReconciliationError, match="records 10 != loaded 6"):
        report.reconcile()
    FileReport("a.dbn", records=10, loaded=6, duplicates=3, quarantined=1).reconcile()
    FileReport("a.dbn", records=5, valid=4, quarantined=1).reconcile()  # --validate-only


def test_totals_table_and_json_agree(tmp_path: Path) -> None:
    run = RunReport("run-1", "duckdb:///h.duckdb")
    run.files = [
        FileReport("/raw/a/t.dbn", schema="trades", records=10, loaded=9, quarantined=1,
                   status="loaded", seconds=0.5),
        FileReport("/raw/b/t.dbn", schema="trades", skipped=7, status="skipped", seconds=0.1),
        FileReport("/raw/b/m.dbn", schema="mbp-1", status="failed", error="truncated"),
    ]  # fmt: skip
    assert run.totals == {
        "records": 10,
        "loaded": 9,
        "duplicates": 0,
        "quarantined": 1,
        "skipped": 7,
    }
    assert [f.path for f in run.failed] == ["/raw/b/m.dbn"]
    lines = run.table().splitlines()
    # two files share a base name, so every row shows the path below the common folder
    assert [line.split()[0] for line in lines[2:5]] == ["a/t.dbn", "b/t.dbn", "b/m.dbn"]
    assert lines[-1].split()[:7] == ["TOTAL", "10", "9", "0", "1", "7", "0.60"]
    run.write_json(tmp_path / "r.json")
    written = json.loads((tmp_path / "r.json").read_text())
    assert written["totals"] == run.totals
    assert [f["status"] for f in written["files"]] == ["loaded", "skipped", "failed"]


def test_display_names_are_base_names_when_they_are_unique() -> None:
    assert display_names(["/x/a.dbn", "/y/b.dbn"]) == ["a.dbn", "b.dbn"]
    assert display_names(["/x/1/a.dbn", "/x/2/a.dbn"]) == ["1/a.dbn", "2/a.dbn"]
