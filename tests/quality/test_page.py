"""The quality page as a person and a browser meet it: sections, counts, self-contained, drawn."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from loguru import logger

from histetl.cli import main
from histetl.outputs import sidecar_path
from histetl.synth import Defects, SynthSpec, write_dbn
from tests.pipeline.test_run import N_TRADES, gateway, gw, trades, write_job
from tests.support.fake_gateway import FakeGateway

__all__ = ["gateway", "gw", "trades"]  # fixtures, imported to be registered here

HISTETL = [sys.executable, "-m", "histetl.cli"]
SECTIONS = (
    "Reconciliation", "Rules", "Volume", "Holes", "Prices", "Books", "Latency", "Sequence",
    "Symbology",
)  # fmt: skip
DEFECTS = Defects(
    crossed_quotes=7, locked_quotes=5, zero_size=3, unmapped_instrument=4, exact_duplicates=2
)


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HISTETL, *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tbbo file with injected defects, loaded into DuckDB with --report and --html."""
    tmp = tmp_path_factory.mktemp("page")
    path = tmp / "tbbo.dbn.zst"
    write_dbn(
        SynthSpec(schema="tbbo", records=6_000, symbols=("ES.c.0", "NQ.c.0"), defects=DEFECTS),
        path,
    )
    db = f"duckdb:///{tmp / 'target.duckdb'}"
    result = run(
        "replay", path, "--db", db, "--report", "run.json", "--html", "out/page.html",
        "--batch-size", "1000", cwd=tmp,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {
        "dir": tmp,
        "db": db,
        "stdout": result.stdout,
        "html": (tmp / "out" / "page.html").read_text("utf-8"),
        "sidecar": json.loads((tmp / "out" / "page.figures.json").read_text("utf-8")),
        "run": json.loads((tmp / "run.json").read_text("utf-8")),
    }


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_replay_html_when_defects_injected_shows_them_with_the_run_report_counts(
    replayed: dict[str, Any],
) -> None:
    (file,) = replayed["run"]["files"]
    rules = file["rules"]
    assert (rules["quote_not_crossed"], rules["quote_not_locked"]) == (7, 5)
    html, text = replayed["html"], _text(replayed["html"])
    assert "report page: out/page.html (figures: out/page.figures.json)" in replayed["stdout"]
    for title in SECTIONS:
        assert f"<h3>{title}</h3>" in html, title
    assert "7 crossed and 5 locked of" in text
    assert f"{file['quarantined']:,} rows quarantined" in text
    assert re.search(r"quote_not_crossed\s+warn\s+7\s", text)
    assert re.search(r"quote_not_locked\s+warn\s+5\s", text)
    assert re.search(r"size_positive\s+error\s+3\s", text)
    assert "4 row(s) of 4 instrument id(s) without a symbol" in text
    assert f"duplicates {file['duplicates']}" not in text  # counts are shown with separators
    assert file["duplicates"] == 2
    assert "WARN" in html
    (table,) = replayed["sidecar"]["tables"]
    (shown,) = table["files"]
    for key in ("records", "loaded", "duplicates", "quarantined"):
        assert shown[key] == file[key], key
    assert shown["reconciled"]
    assert shown["records"] == shown["loaded"] + shown["duplicates"] + shown["quarantined"]


def _headers(html: str) -> list[list[str]]:
    return [
        re.findall(r"<th[^>]*>([^<]*)</th>", head)
        for head in re.findall(r"<thead>(.*?)</thead>", html)
    ]


def test_page_shows_the_count_columns_of_its_mode(replayed: dict[str, Any]) -> None:
    """A load shows `loaded` and no `valid` (0 everywhere); validate-only the other way."""
    summary, reconciliation = _headers(replayed["html"])[:2]
    assert summary[3:7] == ["records", "loaded", "duplicates", "quarantined"]
    assert "valid" not in summary + reconciliation
    assert "records = loaded + duplicates + quarantined." in _text(replayed["html"])
    tmp = replayed["dir"]
    result = run("replay", "tbbo.dbn.zst", "--validate-only", "--html", "vo.html", cwd=tmp)
    assert result.returncode == 0, result.stderr
    html = (tmp / "vo.html").read_text("utf-8")
    summary, reconciliation = _headers(html)[:2]
    assert summary[3:7] == ["records", "duplicates", "quarantined", "valid"]
    assert reconciliation[1:6] == ["records", "duplicates", "quarantined", "valid", "skipped"]
    assert "records = duplicates + quarantined + valid (valid: rows" in _text(html)


def test_sidecar_holds_every_figure_behind_the_charts(replayed: dict[str, Any]) -> None:
    (file,) = replayed["run"]["files"]
    doc = replayed["sidecar"]
    assert doc["format"] == "histetl-quality/1"
    assert doc["run"]["run_id"] == replayed["run"]["run_id"]
    assert doc["run"]["status"] == "WARN"
    figs = doc["tables"][0]["figures"]
    assert sum(v["records"] for v in figs["volume"]) == file["records"]
    assert sum(b["crossed"] for b in figs["books"]) == 7
    assert sum(b["locked"] for b in figs["books"]) == 5
    assert figs["latency"]["per_hour"]
    assert figs["latency"]["histogram"]
    assert {r["name"]: r["count"] for r in doc["tables"][0]["rules"]}["size_positive"] == 3
    assert len(figs["samples"]["size_positive"]) == 3
    assert "quote_not_crossed" not in figs["samples"]  # a warn rule quarantines nothing
    assert figs["symbology"]["unmapped_rows"] == 4


def test_page_is_self_contained_without_scripts_or_network_references(
    replayed: dict[str, Any],
) -> None:
    html = replayed["html"]
    assert "<script" not in html.lower()
    assert "@import" not in html
    assert "<svg" in html
    refs = re.findall(r"""(?:href|src)\s*=\s*["']([^"']*)["']|url\(\s*([^)]*)\)""", html)
    assert refs
    for ref in (a or b for a, b in refs):
        assert ref.strip("'\"").startswith("#"), ref
    # the only absolute URLs are XML namespace names, which are never fetched
    for url in re.findall(r"https?://[^\s\"'<>]+", html):
        assert url.startswith("http://www.w3.org/"), url
    assert len(html.encode()) < 2_000_000


def test_report_command_without_db_shows_counts_and_says_why_figures_are_missing(
    replayed: dict[str, Any],
) -> None:
    tmp = replayed["dir"]
    result = run("report", "run.json", "--html", "counts.html", cwd=tmp)
    assert result.returncode == 0, result.stderr
    html = (tmp / "counts.html").read_text("utf-8")
    for title in SECTIONS:
        assert f"<h3>{title}</h3>" in html, title
    assert "without --db" in html
    assert re.search(r"quote_not_crossed\s+warn\s+7\s", _text(html))
    assert sidecar_path(tmp / "counts.html").is_file()


def test_report_command_with_db_reads_each_table_once_and_matches_the_stream(
    replayed: dict[str, Any],
) -> None:
    tmp = replayed["dir"]
    result = run("report", "run.json", "--html", "db.html", "--db", replayed["db"], cwd=tmp)
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp / "db.figures.json").read_text("utf-8"))
    (table,) = doc["tables"]
    assert table["figures_source"] == "database"
    stream = replayed["sidecar"]["tables"][0]["figures"]
    figs = table["figures"]
    (file,) = replayed["run"]["files"]
    # the target holds the loaded rows; the quarantine file the rest; duplicates are gone
    assert sum(v["records"] for v in figs["volume"]) == file["loaded"] + file["quarantined"]
    for key in ("crossed", "locked"):
        assert sum(b[key] for b in figs["books"]) == sum(b[key] for b in stream["books"]), key
    quotes = [sum(b["quotes"] for b in f["books"]) for f in (stream, figs)]
    assert quotes[0] - quotes[1] == file["duplicates"]  # the stream saw the duplicates too
    assert figs["symbology"]["unmapped_rows"] == 4
    assert len(figs["samples"]["size_positive"]) == 3
    assert "quote_not_crossed" not in figs["samples"]  # a warn rule quarantines nothing


def test_report_command_when_file_is_not_a_run_report_says_so(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("[1, 2]")
    result = run("report", "x.json", "--html", "x.html", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: x.json: not a histetl run report")
    assert "Traceback" not in result.stderr


def test_replay_html_with_workers_is_refused_before_any_work(tmp_path: Path) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=100), path)
    result = run(
        "replay", path, "--validate-only", "--workers", "2", "--html", "p.html", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "--workers 1" in result.stderr
    assert not (tmp_path / "p.html").exists()


def test_quality_package_is_imported_only_when_a_page_is_written(tmp_path: Path) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=100), path)
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from histetl.cli import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "r = CliRunner().invoke(main, ['replay', sys.argv[1], '--validate-only'])\n"
        "assert r.exit_code == 0, r.output\n"
        "print(any(m.startswith('histetl.quality') for m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_demo_prints_where_its_report_page_is(tmp_path: Path) -> None:
    result = run("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "report page: demo/report.html" in result.stdout
    html = (tmp_path / "demo" / "report.html").read_text("utf-8")
    for table in ("trades", "tbbo", "ohlcv_1m", "statistics", "definition"):
        assert f"id='t-{table}'" in html, table
    for title in SECTIONS:
        assert html.count(f"<h3>{title}</h3>") == 5, title
    assert html.count("<svg") >= 5


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_page_rendered_by_headless_chromium_is_not_blank(replayed: dict[str, Any]) -> None:
    from PIL import Image

    page = replayed["dir"] / "out" / "page.html"
    png = replayed["dir"] / "page.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1280,2400", f"--screenshot={png}", page.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
            env={**os.environ, "HOME": profile},
        )  # fmt: skip
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        assert rgb.size == (1280, 2400)
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        pixels = rgb.size[0] * rgb.size[1]
        near_white = sum(n for n, c in colours if min(c) >= 240)
    assert len(colours) > 200  # text, badges, chart lines: not a blank or one-colour page
    assert pixels - near_white > pixels * 0.03


def test_run_html_writes_the_page_of_the_files_it_fetched_and_loaded(
    gw: FakeGateway, tmp_path: Path
) -> None:
    job = write_job(tmp_path, gw)
    try:
        result = CliRunner().invoke(
            main, ["run", str(job), "--html", str(tmp_path / "run.html")], catch_exceptions=False
        )
    finally:
        logger.remove()
    assert result.exit_code == 0, result.output
    assert f"report page: {tmp_path / 'run.html'}" in result.stdout
    doc = json.loads((tmp_path / "run.figures.json").read_text("utf-8"))
    assert doc["run"]["totals"]["records"] == doc["run"]["totals"]["loaded"] == N_TRADES
    (table,) = doc["tables"]
    assert len(table["files"]) == 3  # one per day chunk, merged into the table's figures
    assert table["figures_source"] == "stream"
    assert sum(v["records"] for v in table["figures"]["volume"]) == N_TRADES
