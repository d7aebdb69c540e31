"""histetl.quality.results: a table's figures as the page's dict: symbology per day (new and
missing symbols, unmapped instruments), per-instrument identities and the latency summary."""

from __future__ import annotations

import polars as pl

from histetl.quality.figures import FigureOptions, TableFigures
from histetl.quality.results import NO_SYMBOL, figures_dict, records, series_dict
from histetl.schemas import table_spec

DAY = 86_400 * 10**9
T0 = 1_702_512_000 * 10**9 + 15 * 3_600 * 10**9  # Thursday 2023-12-14 15:00 UTC


def trades(rows: list[tuple[int, int, str | None]], latency_ns: int = 5_000) -> pl.DataFrame:
    """(ts_recv, instrument_id, symbol) rows of a trades table, 1 contract at 4700 each."""
    n = len(rows)
    recv = pl.Series([r[0] for r in rows], dtype=pl.Int64)
    return pl.DataFrame(
        {
            "ts_recv": recv.cast(pl.Datetime("ns", "UTC")),
            "ts_event": (recv - latency_ns).cast(pl.Datetime("ns", "UTC")),
            "publisher_id": pl.Series([1] * n, dtype=pl.UInt16),
            "instrument_id": pl.Series([r[1] for r in rows], dtype=pl.UInt32),
            "action": ["T"] * n,
            "price": pl.Series([4700.0] * n).cast(pl.Decimal(19, 9)),
            "size": pl.Series([1] * n, dtype=pl.UInt32),
            "sequence": pl.Series(range(1, n + 1), dtype=pl.UInt32),
            "symbol": pl.Series([r[2] for r in rows], dtype=pl.String),
        }
    )


def figures(*frames: pl.DataFrame, **options: int) -> TableFigures:
    out = TableFigures(table_spec("trades"), "GLBX.MDP3", FigureOptions(**options))
    for frame in frames:
        out.add(frame, pl.DataFrame())
    return out


def test_symbology_lists_each_days_symbols_and_what_changed_from_the_day_before() -> None:
    day1 = trades([(T0, 1, "ESH4"), (T0 + 1, 2, "NQH4")])
    day2 = trades([(T0 + DAY, 1, "ESH4"), (T0 + DAY + 1, 3, "ESM4")])

    symbology = figures_dict(figures(day1, day2))["symbology"]

    assert symbology["per_day"] == [
        {"day": "2023-12-14", "symbols": ["ESH4", "NQH4"], "new": None, "missing": None},
        {"day": "2023-12-15", "symbols": ["ESH4", "ESM4"], "new": ["ESM4"], "missing": ["NQH4"]},
    ]
    assert symbology["unmapped_rows"] == 0
    assert symbology["unmapped_ids"] == []


def test_unmapped_instruments_are_counted_most_rows_first_and_listed_up_to_the_limit() -> None:
    frame = trades(
        [(T0 + i, 9, None) for i in range(3)]
        + [(T0 + 10 + i, 4, None) for i in range(3)]
        + [(T0 + 20, 8, None), (T0 + 30, 1, "ESH4")]
    )

    symbology = figures_dict(figures(frame, max_listed=2))["symbology"]

    assert symbology["unmapped_rows"] == 7
    assert symbology["unmapped_id_count"] == 3
    # ties in rows: the lower instrument id first
    assert symbology["unmapped_ids"] == [
        {"instrument_id": 4, "records": 3},
        {"instrument_id": 9, "records": 3},
    ]
    assert symbology["per_day"][0]["symbols"] == ["ESH4"]


def test_series_name_each_instrument_by_publisher_id_and_symbol() -> None:
    frame = trades([(T0, 5, "ESH4"), (T0 + 3_600 * 10**9, 5, "ESH4"), (T0, 6, None)])

    longest = series_dict(figures(frame))["longest"]

    assert longest == [
        {
            "publisher_id": 1,
            "instrument_id": 5,
            "symbol": "ESH4",
            "silence_ns": 3_600 * 10**9,
            "from_ns": T0,
            "to_ns": T0 + 3_600 * 10**9,
        }
    ]
    assert NO_SYMBOL == "(no symbol)"


def test_latency_summary_counts_every_record_and_keeps_the_extremes() -> None:
    minute = 60 * 10**9
    frame = trades([(T0 + i * minute, 1, "ESH4") for i in range(100)], latency_ns=5_000)

    latency = figures_dict(figures(frame))["latency"]

    assert latency["overall"]["records"] == 100
    assert latency["overall"]["negative"] == 0
    assert (latency["min_ns"], latency["max_ns"]) == (5_000, 5_000)
    assert [h["records"] for h in latency["per_hour"]] == [60, 40]
    assert sum(h["n"] for h in latency["histogram"]) == 100
    assert latency["bucket_width"].endswith("of an octave (log-linear)")


def test_nothing_fed_gives_empty_figures() -> None:
    empty = figures_dict(figures())

    assert empty["volume"] == []
    assert empty["latency"]["overall"]["records"] == 0
    assert empty["latency"]["per_hour"] == []
    assert empty["symbology"] == {
        "per_day": [],
        "unmapped_rows": 0,
        "unmapped_ids": [],
        "unmapped_id_count": 0,
    }
    assert records(pl.DataFrame()) == []
