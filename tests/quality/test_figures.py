"""Quality figures: equal to the run report's counts, independent of batch size, bounded state."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from histetl.options import ReplayOptions
from histetl.pipeline.replay import Replayer
from histetl.quality.figures import HOUR_NS, FigureOptions, TableFigures
from histetl.quality.observer import ReportObserver
from histetl.report import FileReport
from histetl.schemas import table_spec
from histetl.synth import Defects, SynthSpec, write_dbn

DEFECTS = Defects(crossed_quotes=7, locked_quotes=5, zero_size=3, unmapped_instrument=4)


def _replay(path: Path, tmp_path: Path, batch_size: int) -> tuple[FileReport, ReportObserver]:
    replayer = Replayer(
        ReplayOptions(validate_only=True, batch_size=batch_size, quarantine_dir=tmp_path / "q")
    )
    observer = ReportObserver(replayer.rules)
    replayer.observer = observer
    report = replayer.run([path])
    return report.files[0], observer


@pytest.fixture(scope="module")
def tbbo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("figures") / "tbbo.dbn.zst"
    write_dbn(
        SynthSpec(schema="tbbo", records=20_000, symbols=("ES.c.0", "NQ.c.0"), defects=DEFECTS),
        path,
    )
    return path


def test_figures_when_defects_injected_equal_the_run_report_counts(
    tbbo: Path, tmp_path: Path
) -> None:
    report, observer = _replay(tbbo, tmp_path, batch_size=1_000)
    (seen,) = observer.files
    assert seen.figures is not None
    figs = seen.figures.to_dict()
    assert sum(r["records"] for r in figs["volume"]) == report.records
    assert sum(b["crossed"] for b in figs["books"]) == report.rules["quote_not_crossed"] == 7
    assert sum(b["locked"] for b in figs["books"]) == report.rules["quote_not_locked"] == 5
    assert figs["symbology"]["unmapped_rows"] == report.rules["symbol_present"] == 4
    assert figs["symbology"]["unmapped_id_count"] == 4  # a distinct id per injected row
    assert figs["latency"]["overall"]["records"] == report.records
    assert len(figs["samples"]["size_positive"]) == 3
    assert dict(seen.rules)["quote_not_locked"] == dict(seen.rules)["quote_not_crossed"] == "warn"
    for rule in ("quote_not_locked", "quote_not_crossed"):  # a warn rule quarantines nothing
        assert rule not in figs["samples"]


def test_figures_do_not_depend_on_where_batches_end(tbbo: Path, tmp_path: Path) -> None:
    small = _replay(tbbo, tmp_path / "a", batch_size=997)[1].files[0].figures
    whole = _replay(tbbo, tmp_path / "b", batch_size=1_000_000)[1].files[0].figures
    assert small is not None
    assert whole is not None
    a, b = small.to_dict(), whole.to_dict()
    for key in ("volume", "books", "holes", "prices", "sequence", "symbology"):
        assert a[key] == b[key], key
    assert a["latency"]["per_hour"] == b["latency"]["per_hour"]


class _Batches:
    """Keeps every batch's valid rows (the pipeline's BatchObserver protocol)."""

    def __init__(self) -> None:
        self.valid: list[pl.DataFrame] = []

    def file_started(self, report: FileReport) -> None:
        self.valid.clear()

    def batch(self, report: FileReport, spec: Any, valid: pl.DataFrame, _: pl.DataFrame) -> None:
        self.valid.append(valid)

    def file_finished(self, report: FileReport) -> None:
        pass


def test_hourly_figures_do_not_depend_on_the_row_order_in_a_batch(
    tbbo: Path, tmp_path: Path
) -> None:
    # in time order, counts come from each hour's rows (one hour: the whole batch); out of
    # order, from a key per row (one hour: the whole batch again)
    replayer = Replayer(ReplayOptions(validate_only=True, batch_size=300, quarantine_dir=tmp_path))
    batches = replayer.observer = _Batches()
    replayer.run([tbbo])
    hours = [b["ts_recv"].dt.truncate("1h").n_unique() for b in batches.valid]
    assert 1 in hours  # both kinds of batch
    assert max(hours) > 1
    spec, empty = table_spec("tbbo"), pl.DataFrame()
    ordered, shuffled = (TableFigures(spec, "GLBX.MDP3", FigureOptions()) for _ in range(2))
    for i, batch in enumerate(batches.valid):
        ordered.add(batch, empty)
        shuffled.add(batch.sample(fraction=1.0, shuffle=True, seed=i), empty)
    a, b = ordered.to_dict(), shuffled.to_dict()
    assert sum(x["crossed"] + x["locked"] for x in a["books"]) > 0
    for key in ("volume", "books", "latency"):
        assert a[key] == b[key], key


def test_figure_state_does_not_grow_with_the_number_of_batches(tmp_path: Path) -> None:
    sizes = {}
    for records in (10_000, 100_000):
        path = tmp_path / f"trades-{records}.dbn.zst"
        write_dbn(SynthSpec(schema="trades", records=records, symbols=("ES.c.0",)), path)
        figures = _replay(path, tmp_path, batch_size=1_000)[1].files[0].figures
        assert figures is not None
        sizes[records] = figures.state_rows()
    # 10 vs 100 batches over the same two days: the same hours, instruments and days; only the
    # latency histograms fill in a few more of their (bounded) buckets
    assert sizes[100_000] <= sizes[10_000] * 1.25, sizes
    assert sizes[100_000] < 100_000 / 20, sizes


# -- hand-made series -----------------------------------------------------------------------------

T0 = int(dt.datetime(2023, 12, 14, 14, 0, tzinfo=dt.UTC).timestamp()) * 10**9  # Thursday
SECOND = 10**9


def _trades(times: list[int], prices: list[float], seqs: list[int] | None = None) -> pl.DataFrame:
    n = len(times)
    ts = pl.Series(times, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC"))
    return pl.DataFrame(
        {
            "ts_recv": ts,
            "ts_event": ts,
            "publisher_id": pl.Series([1] * n, dtype=pl.UInt16),
            "instrument_id": pl.Series([7] * n, dtype=pl.UInt32),
            "action": ["T"] * n,
            "price": pl.Series(prices, dtype=pl.Float64).cast(pl.Decimal(19, 9)),
            "size": pl.Series([1] * n, dtype=pl.UInt32),
            "sequence": pl.Series(seqs or list(range(1, n + 1)), dtype=pl.UInt32),
            "symbol": ["ESH4"] * n,
        }
    )


def _feed(dataset: str, frames: list[pl.DataFrame], **options: Any) -> dict[str, Any]:
    figures = TableFigures(table_spec("trades"), dataset, FigureOptions(**options))
    empty = pl.DataFrame()
    for frame in frames:
        figures.add(frame, empty)
    return figures.to_dict()


def test_holes_when_silence_spans_the_daily_break_count_only_session_time() -> None:
    # 21:30 UTC -> 23:30 UTC on a Thursday: CME Globex is closed 22:00-23:00 UTC (16:00-17:00
    # Chicago), so 2 hours of silence are 1 hour inside the session.
    start = T0 + 7 * 3600 * SECOND + 30 * 60 * SECOND
    times = [start - 2 * SECOND, start, start + 2 * 3600 * SECOND, start + 2 * 3600 * SECOND + 1]
    frames = [_trades(times[:2], [100.0, 100.25]), _trades(times[2:], [100.0, 100.25])]
    (hole,) = _feed("GLBX.MDP3", frames)["holes"]["longest"]
    assert hole["silence_ns"] == 3600 * SECOND
    assert (hole["from_ns"], hole["to_ns"]) == (times[1], times[2])
    (raw,) = _feed("NONE.KNOWN", frames)["holes"]["longest"]
    assert raw["silence_ns"] == 2 * 3600 * SECOND


def test_prices_when_one_trade_jumps_list_it_with_time_and_symbol() -> None:
    times = [T0 + i * SECOND for i in range(200)]
    prices = [100.0 + 0.25 * (i % 2) for i in range(200)]
    prices[150:] = [p + 30.0 for p in prices[150:]]  # one jump of 120 ticks at row 150
    frames = [_trades(times[:120], prices[:120]), _trades(times[120:], prices[120:])]
    result = _feed("GLBX.MDP3", frames)["prices"]
    assert result["count"] == 1
    (jump,) = result["listed"]
    assert (jump["t"], jump["symbol"]) == (times[150], "ESH4")
    assert jump["ticks"] == pytest.approx(119.0)  # 29.75 up over a 100.25 -> 130.0 step


def test_sequence_when_it_goes_back_counts_a_regression_and_a_gap() -> None:
    times = [T0 + i * SECOND for i in range(5)]
    frames = [_trades(times[:3], [1.0] * 3, [1, 2, 3]), _trades(times[3:], [1.0] * 2, [2, 5])]
    seq = _feed("GLBX.MDP3", frames)["sequence"]
    assert (seq["regressions"], seq["gaps"]) == (1, 1)
    assert seq["regression_examples"][0]["t"] == times[3]


def test_volume_counts_records_and_size_per_hour() -> None:
    times = [T0 + i * 600 * SECOND for i in range(12)]  # 2 hours, 6 trades each
    volume = _feed("GLBX.MDP3", [_trades(times, [1.0] * 12)])["volume"]
    assert [(v["hour"], v["records"], v["size"]) for v in volume] == [
        (T0 // HOUR_NS, 6, 6),
        (T0 // HOUR_NS + 1, 6, 6),
    ]
