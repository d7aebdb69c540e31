"""histetl.quality.observer: the pipeline's observer keeps a file's figures only when the file
ends well, starts afresh on a retry, and records the rules that applied."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.quality.observer import ReportObserver
from histetl.report import FileReport
from histetl.schemas import table_spec
from histetl.synth import Defects, SynthSpec, write_dbn
from histetl.validate import RuleBook
from tests.quality.test_figures import SECOND, T0, _replay, _trades
from tests.support.pgserver import PgServer, fresh_schema


def test_observer_when_file_fails_keeps_its_counts_but_no_figures(tmp_path: Path) -> None:
    path = tmp_path / "trades.dbn"
    write_dbn(SynthSpec(schema="trades", records=5_000), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 17])  # a truncated last record
    report, observer = _replay(path, tmp_path, batch_size=500)
    assert report.status == "failed"
    (seen,) = observer.files
    assert seen.figures is None
    assert seen.report is report


class _Counting(ReportObserver):
    starts = 0

    def file_started(self, report: FileReport) -> None:
        self.starts += 1
        super().file_started(report)


@pytest.mark.postgres
def test_observer_when_a_load_is_retried_in_merge_mode_counts_each_row_once(
    pg_server: PgServer, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.dbn", tmp_path / "b.dbn"
    write_dbn(SynthSpec(schema="trades", records=2_000), first)
    # new rows of the same day and symbols, one of them twice: the direct load (which skips
    # rows already stored) meets the repeat inside the file, so the pipeline replays the file
    # in merge mode
    write_dbn(
        SynthSpec(schema="trades", records=2_000, seed=1, defects=Defects(exact_duplicates=1)),
        second,
    )
    with fresh_schema(pg_server.uri) as (uri, _schema):
        options = ReplayOptions(db=uri, quarantine_dir=tmp_path / "q")
        Replayer(options).run([first])
        replayer = Replayer(options)
        observer = _Counting(replayer.rules)
        replayer.observer = observer
        (report,) = replayer.run([second]).files
    assert report.status == "loaded"
    assert (report.loaded, report.duplicates) == (2_000, 1)
    assert observer.starts == 2  # the direct attempt, then the merge
    (seen,) = observer.files
    assert seen.figures is not None
    assert sum(v["records"] for v in seen.figures.to_dict()["volume"]) == report.records


def _report(status: str, path: str = "a.dbn") -> FileReport:
    return FileReport(path=path, status=status, dataset="GLBX.MDP3", schema="trades")


def _records(observer: ReportObserver, index: int = -1) -> int | None:
    figures = observer.files[index].figures
    if figures is None:
        return None
    return sum(v["records"] for v in figures.to_dict()["volume"])


@pytest.mark.parametrize(
    ("status", "kept"), [("loaded", 3), ("validated", 3), ("failed", None), ("skipped", None)]
)
def test_figures_are_kept_only_for_a_file_that_ends_well(status: str, kept: int | None) -> None:
    observer = ReportObserver()
    report = _report("loaded")
    frame = _trades([T0, T0 + SECOND, T0 + 2 * SECOND], [4700.0, 4700.25, 4700.5])

    observer.file_started(report)
    observer.batch(report, table_spec("trades"), frame, pl.DataFrame())
    report.status = status
    observer.file_finished(report)

    (seen,) = observer.files
    assert seen.report is report
    assert _records(observer) == kept
    assert ("size_positive", "error") in seen.rules


def test_a_retried_file_starts_its_figures_afresh() -> None:
    observer = ReportObserver()
    report = _report("loaded")
    spec = table_spec("trades")
    first_try = _trades([T0, T0 + SECOND], [4700.0, 4700.25])
    second_try = _trades([T0 + 5 * SECOND], [4701.0])

    observer.file_started(report)
    observer.batch(report, spec, first_try, pl.DataFrame())
    observer.file_started(report)  # the pipeline retries the file
    observer.batch(report, spec, second_try, pl.DataFrame())
    observer.file_finished(report)

    assert _records(observer) == 1


def test_a_file_without_batches_has_no_figures_and_no_rules() -> None:
    observer = ReportObserver(RuleBook.load())
    report = _report("loaded")

    observer.file_started(report)
    observer.file_finished(report)

    (seen,) = observer.files
    assert (seen.figures, seen.rules) == (None, [])
