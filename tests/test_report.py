"""The run report: the terminal table tells files apart, the JSON goes through the one writer."""

from __future__ import annotations

import json
from pathlib import Path

from histetl.report import FileReport, RunReport, display_names


def first_column(report: RunReport) -> list[str]:
    lines = report.table().splitlines()
    return [line.split()[0] for line in lines[2:-2]]  # header, rule ... rule, totals


def test_table_when_two_files_share_a_name_shows_the_paths_that_tell_them_apart() -> None:
    report = RunReport("run", "duckdb:///x")
    report.files = [
        FileReport(path="/data/raw/GLBX.MDP3/test_data.trades.dbn.zst", status="loaded"),
        FileReport(path="/data/raw/XNAS.ITCH/test_data.trades.dbn.zst", status="loaded"),
    ]
    assert first_column(report) == [
        "GLBX.MDP3/test_data.trades.dbn.zst",
        "XNAS.ITCH/test_data.trades.dbn.zst",
    ]


def test_table_when_names_are_unique_shows_base_names() -> None:
    report = RunReport("run", "duckdb:///x")
    report.files = [
        FileReport(path="/a/b/one.dbn", status="loaded"),
        FileReport(path="/c/two.dbn", status="loaded"),
    ]
    assert first_column(report) == ["one.dbn", "two.dbn"]


def test_display_names_at_different_depths_are_relative_to_the_shared_folder() -> None:
    assert display_names(["/d/x/f.dbn", "/d/y/z/f.dbn", "/d/g.dbn"]) == [
        "x/f.dbn",
        "y/z/f.dbn",
        "g.dbn",
    ]


def test_write_json_writes_the_report_atomically(tmp_path: Path) -> None:
    report = RunReport("run", "duckdb:///x", files=[FileReport(path="f.dbn", records=3)])
    target = tmp_path / "out" / "report.json"
    report.write_json(target)
    assert json.loads(target.read_text())["files"][0]["records"] == 3
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]  # no temp file left
