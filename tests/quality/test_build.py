"""The report document against a real PostgreSQL target: a load's page, then `histetl report`
reading each table back once."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from histetl.synth import Defects, SynthSpec, write_dbn
from tests.support.pgserver import PgServer, fresh_schema

HISTETL = [sys.executable, "-m", "histetl.cli"]
DAY_NS = 86_400 * 10**9


def day_ns(day: str) -> int:
    return int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC).timestamp()) * 10**9


@pytest.fixture
def pg_uri(pg_server: PgServer) -> Iterator[str]:
    with fresh_schema(pg_server.uri) as (uri, _schema):
        yield uri


@pytest.mark.postgres
def test_report_from_postgres_matches_the_streamed_figures(pg_uri: str, tmp_path: Path) -> None:
    days = []
    for n, start in enumerate(("2023-12-11", "2023-12-12")):  # two files, two days
        path = tmp_path / f"tbbo-{n}.dbn.zst"
        write_dbn(
            SynthSpec(
                schema="tbbo",
                records=2_000,
                days=1,
                start=dt.date.fromisoformat(start),
                seed=n,
                defects=Defects(crossed_quotes=2 + n, locked_quotes=1),
            ),
            path,
        )
        days.append(path)

    def histetl(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HISTETL, *map(str, args)], cwd=tmp_path, capture_output=True, text=True, check=False
        )

    first = histetl("replay", days[0], "--db", pg_uri, "--report", "first.json")
    assert first.returncode == 0, first.stderr
    second = histetl(
        "replay", days[1], "--db", pg_uri, "--report", "run.json", "--html", "load.html"
    )
    assert second.returncode == 0, second.stderr
    stream = json.loads((tmp_path / "load.figures.json").read_text())
    (table,) = stream["tables"]
    assert sum(b["crossed"] for b in table["figures"]["books"]) == 3
    (day,) = table["figures"]["symbology"]["per_day"]
    # the first day of this run is compared with the day before it in the target
    assert day["compared_with_target"]
    assert (day["new"], day["missing"]) == ([], [])

    again = histetl("report", "run.json", "--html", "db.html", "--db", pg_uri)
    assert again.returncode == 0, again.stderr
    read = json.loads((tmp_path / "db.figures.json").read_text())
    (table,) = read["tables"]
    assert table["figures_source"] == "database"
    # the rows of the run's time span (its file's header: the second day) plus its quarantine
    # file; the first day's rows are not read
    start = day_ns("2023-12-12")  # synth's header: the request's whole UTC days
    assert table["figures_spans"] == [[start, start + DAY_NS]]
    volume = sum(v["records"] for v in table["figures"]["volume"])
    one, two = (
        json.loads((tmp_path / f).read_text())["totals"] for f in ("first.json", "run.json")
    )
    assert volume == two["loaded"] + two["quarantined"]
    assert sum(b["crossed"] for b in table["figures"]["books"]) == 3
    assert "within the run's files' time span" in (tmp_path / "db.html").read_text("utf-8")

    days[1].unlink()  # the run's file is gone: no time span, so every row of the table
    whole = histetl("report", "run.json", "--html", "all.html", "--db", pg_uri)
    assert whole.returncode == 0, whole.stderr
    (table,) = json.loads((tmp_path / "all.figures.json").read_text())["tables"]
    assert table["figures_spans"] is None
    volume = sum(v["records"] for v in table["figures"]["volume"])
    assert volume == one["loaded"] + two["loaded"] + two["quarantined"]
    assert sum(b["crossed"] for b in table["figures"]["books"]) == 2 + 3


def test_file_spans_when_files_overlap_are_joined_and_none_when_a_file_is_gone(
    tmp_path: Path,
) -> None:
    from histetl.quality.build import file_spans

    paths = []
    for n, (start, days) in enumerate((("2023-12-11", 2), ("2023-12-12", 2), ("2023-12-20", 1))):
        path = tmp_path / f"t{n}.dbn"
        write_dbn(
            SynthSpec(schema="trades", records=50, start=dt.date.fromisoformat(start), days=days),
            path,
        )
        paths.append({"path": str(path)})
    assert file_spans(paths) == [
        (day_ns("2023-12-11"), day_ns("2023-12-14")),
        (day_ns("2023-12-20"), day_ns("2023-12-21")),
    ]
    assert file_spans([*paths, {"path": str(tmp_path / "gone.dbn")}]) is None


def test_a_page_whose_sidecar_cannot_be_written_is_not_written_either(tmp_path: Path) -> None:
    from histetl.outputs import OutputError, sidecar_path
    from histetl.quality.build import write

    dbn, made = tmp_path / "t.dbn", tmp_path / "made.html"
    write_dbn(SynthSpec(schema="trades", records=500), dbn)
    done = subprocess.run(
        [*HISTETL, "replay", "--validate-only", "--html", str(made), str(dbn)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(sidecar_path(made).read_text())  # the sidecar is the page's document
    html = tmp_path / "r.html"
    sidecar_path(html).mkdir()  # a folder where the sidecar goes (made while the run ran)
    with pytest.raises(OutputError) as caught:
        write(html, doc)
    assert caught.value.message == (
        f"--html: {sidecar_path(html)} is a folder\n  hint: give a file name"
    )
    assert not html.exists()


def test_replay_html_whose_sidecar_cannot_be_written_stops_before_any_work(
    tmp_path: Path,
) -> None:
    from histetl.outputs import sidecar_path

    dbn = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=500), dbn)
    html = tmp_path / "r.html"
    sidecar_path(html).mkdir()
    done = subprocess.run(
        [*HISTETL, "replay", "--validate-only", "--html", str(html), str(dbn)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: --html: {sidecar_path(html)} is a folder\n  hint: give a file name\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.figures.json", "t.dbn"]
