"""Per-instrument figures (holes, prices, sequence, volume) against a plain reference.

The figures are computed batch by batch, a few instruments at a time or, past `MAX_GROUPS`
instruments in a batch, all at once sorted by instrument. The reference here walks each
instrument's rows of the whole file in plain Python, straight from the definitions in
histetl/quality/figures.py, so both ways of batching are proven equal to it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import statistics
from collections import defaultdict
from typing import Any

import numpy as np
import polars as pl
import pytest

from histetl.quality.figures import DAY_NS, HOUR_NS, FigureOptions, TableFigures
from histetl.quality.series import MAX_GROUPS, instrument_groups
from histetl.read.calendars import calendar_for, covered
from histetl.schemas import table_spec

DATASET = "GLBX.MDP3"
T0 = int(dt.datetime(2023, 12, 14, 19, 0, tzinfo=dt.UTC).timestamp()) * 10**9  # a Thursday
TICK = 250_000_000  # 0.25 in units of 1e-9
OPTIONS = FigureOptions(max_listed=6)  # few listed: the list is trimmed on the way


def _frame(instruments: list[tuple[int, int]], rows: int, seed: int) -> pl.DataFrame:
    """Trades of `instruments` ((publisher, instrument id)) in random order over ~30 hours
    (the CME daily break and a UTC midnight inside): a one-tick random walk with jumps of
    distinct sizes, sequence gaps and regressions, and silences cut out of some instruments."""
    rng = np.random.default_rng(seed)
    n_inst = len(instruments)
    which = rng.integers(0, n_inst, rows)
    which[:n_inst] = np.arange(n_inst)  # every instrument from the first rows on
    t = T0 + np.cumsum(rng.integers(1, 9 * 10**9, rows))
    for k in range(0, n_inst, 2):  # silences: instrument k drops out for a while
        lo = int(rng.integers(rows // 10, rows - rows // 10))
        which[lo : lo + int(rng.integers(50, 400))] = (k + 1) % n_inst
    step = rng.choice([-1, 1], rows)
    step[:n_inst] = 1  # the first change of each instrument is one tick: the tick from then on
    jumps = rng.choice(np.arange(n_inst, rows), 40, replace=False)
    step[jumps] = rng.permutation(np.arange(12, 400))[:40] * rng.choice([-1, 1], 40)
    price = np.zeros(rows, dtype=np.int64)
    seq = np.zeros(rows, dtype=np.int64)
    level = [4_000 * 10**9 + 1_000 * TICK * k for k in range(n_inst)]
    number = [1_000 * k for k in range(n_inst)]
    for i, k in enumerate(which):
        level[k] += int(step[i]) * TICK
        number[k] += int(rng.choice([1, 1, 1, 1, 1, 1, 1, 4, -6]))
        price[i], seq[i] = level[k], number[k]
    pub = np.array([instruments[k][0] for k in which], dtype=np.uint16)
    iid = np.array([instruments[k][1] for k in which], dtype=np.uint32)
    ts = pl.Series(t, dtype=pl.Int64).cast(pl.Datetime("ns", "UTC"))
    return pl.DataFrame(
        {
            "ts_recv": ts,
            "ts_event": ts,
            "publisher_id": pub,
            "instrument_id": iid,
            "action": ["T"] * rows,
            "price": pl.Series(price / 1e9, dtype=pl.Float64).cast(pl.Decimal(19, 9)),
            "size": rng.integers(1, 30, rows).astype(np.uint32),
            "sequence": seq.astype(np.uint32),
            "symbol": [None if i % 7 == 3 else f"S{p}.{i}" for p, i in zip(pub, iid, strict=True)],
        }
    )


def _figures(frame: pl.DataFrame, batch: int) -> dict[str, Any]:
    figures = TableFigures(table_spec("trades"), DATASET, OPTIONS)
    for start in range(0, frame.height, batch):
        figures.add(frame.slice(start, batch), pl.DataFrame())
    return figures.to_dict()


def _reference(frame: pl.DataFrame) -> dict[str, Any]:
    """The figures from each instrument's rows of the whole file, in plain Python."""
    o = OPTIONS
    calendar = calendar_for("auto", [DATASET])
    assert calendar is not None
    t_all = frame["ts_recv"].cast(pl.Int64)
    sessions = calendar.ranges(int(t_all.min()) // DAY_NS * DAY_NS, int(t_all.max()) + DAY_NS)
    rows: dict[tuple[int, int], list[tuple[int, int, int, int]]] = defaultdict(list)
    units = (frame["price"].cast(pl.Float64) * 1e9).round().cast(pl.Int64)
    for pub, iid, t, p, s in zip(
        frame["publisher_id"], frame["instrument_id"], t_all, units, frame["sequence"], strict=True
    ):
        rows[(pub, iid)].append((t, p, s, 0))
    longest, sequence, jumps = [], [], []
    for (pub, iid), seen in rows.items():
        ident = {"publisher_id": pub, "instrument_id": iid}
        t = np.array([r[0] for r in seen], dtype=np.int64)
        silence = covered(sessions, t[:-1], t[1:])
        if len(silence) and silence.max() > 0:
            i = int(np.argmax(silence))
            longest.append({**ident, "silence_ns": int(silence[i]), "from_ns": int(t[i]),
                            "to_ns": int(t[i + 1])})  # fmt: skip
        steps = [b[2] - a[2] for a, b in itertools.pairwise(seen)]
        sequence.append({**ident, "steps": len(steps),
                         "regressions": sum(s < 0 for s in steps),
                         "gaps": sum(s > 1 for s in steps),
                         "largest_gap": max([0, *steps]) - 1})  # fmt: skip
        changes = [abs(b[1] - a[1]) for a, b in itertools.pairwise(seen)]
        tick = min(c for c in changes if c)
        for i, d in enumerate(changes):
            window = changes[max(0, i - o.mad_window) : i]
            mad = statistics.median(window) if len(window) >= 10 else None
            by_tick = d > o.jump_ticks * tick
            if by_tick or (mad and d > o.jump_k * mad):
                jumps.append({**ident, "t": seen[i + 1][0], "ticks": d / tick,
                              "reason": f"> {o.jump_ticks} ticks" if by_tick
                              else f"> {o.jump_k:g} x median change"})  # fmt: skip
    listed = sorted(sorted(jumps, key=lambda j: -j["ticks"])[: o.max_listed], key=lambda j: j["t"])
    volume = (
        frame.group_by(
            (pl.col("ts_recv").cast(pl.Int64) // HOUR_NS).alias("hour"),
            "publisher_id",
            "instrument_id",
            "symbol",
        )
        .agg(pl.len().alias("records"), pl.col("size").sum().alias("size"))
        .select(pl.exclude("symbol").cast(pl.Int64), "symbol")
    )
    return {"longest": longest, "sequence": sequence, "jump_count": len(jumps),
            "listed": listed, "volume": volume}  # fmt: skip


def _by_key(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[tuple[int, int], Any]:
    return {(r["publisher_id"], r["instrument_id"]): [r[f] for f in fields] for r in rows}


CASES = {
    "few": [(1, 11), (1, 12), (2, 11)],  # one instrument id on two publishers
    "many": [(1, 100 + 7 * k) for k in range(MAX_GROUPS + 4)] + [(2, 100)],
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("batch", [613, 5_000, 100_000])
def test_series_figures_equal_a_per_instrument_reference(case: str, batch: int) -> None:
    frame = _frame(CASES[case], 12_000, seed=len(CASES[case]))
    got, want = _figures(frame, batch), _reference(frame)
    holes = ("silence_ns", "from_ns", "to_ns")
    assert _by_key(got["holes"]["longest"], holes) == _by_key(want["longest"], holes)
    seq = ("steps", "regressions", "gaps", "largest_gap")
    assert _by_key(got["sequence"]["per_instrument"], seq) == _by_key(want["sequence"], seq)
    assert got["sequence"]["regressions"] == sum(r["regressions"] for r in want["sequence"])
    prices = got["prices"]
    assert prices["count"] == want["jump_count"] >= 30
    fields = ("publisher_id", "instrument_id", "t", "ticks", "reason")
    assert [[j[f] for f in fields] for j in prices["listed"]] == [
        [j[f] for f in fields] for j in want["listed"]
    ]
    volume = pl.DataFrame(got["volume"]).select(want["volume"].columns)
    keys = ["hour", "publisher_id", "instrument_id"]
    assert volume.sort(keys).to_dicts() == want["volume"].sort(keys).to_dicts()


def test_series_figures_when_the_instruments_change_between_batches() -> None:
    # a few instruments, then many, then a few again: both ways of batching in one file
    few, many = CASES["few"], CASES["many"]
    parts = [_frame(few, 3_000, 1), _frame(many, 3_000, 2), _frame(few, 3_000, 3)]
    shift = 0
    frames = []
    for part in parts:  # one after the other in time
        t = part["ts_recv"].cast(pl.Int64) + shift
        frames.append(part.with_columns(t.cast(pl.Datetime("ns", "UTC")).alias("ts_recv")))
        shift = int(t.max()) - T0 + 10**9
    frame = pl.concat(frames)
    frame = frame.with_columns(pl.col("ts_recv").alias("ts_event"))
    got, want = _figures(frame, 1_000), _reference(frame)
    holes = ("silence_ns", "from_ns", "to_ns")
    assert _by_key(got["holes"]["longest"], holes) == _by_key(want["longest"], holes)
    seq = ("steps", "regressions", "gaps", "largest_gap")
    assert _by_key(got["sequence"]["per_instrument"], seq) == _by_key(want["sequence"], seq)
    assert got["prices"]["count"] == want["jump_count"]


def test_instrument_groups_split_rows_by_key_in_order_of_first_appearance() -> None:
    pub = np.array([1, 1, 2, 1, 2, 1], dtype=np.uint16)
    iid = np.array([5, 7, 5, 5, 5, 7], dtype=np.uint32)
    groups = instrument_groups(pub, iid)
    assert groups is not None
    assert [(key, rows.tolist()) for key, rows in groups if rows is not None] == [
        ((1 << 32) | 5, [0, 3]),
        ((1 << 32) | 7, [1, 5]),
        ((2 << 32) | 5, [2, 4]),
    ]
    assert instrument_groups(pub[:1], iid[:1]) == [((1 << 32) | 5, None)]
    one_id = instrument_groups(pub[2:4], iid[2:4])  # one instrument id, two publishers
    assert one_id is not None
    assert [key for key, _ in one_id] == [(2 << 32) | 5, (1 << 32) | 5]
    many = np.arange(MAX_GROUPS + 1, dtype=np.uint32)
    assert instrument_groups(np.ones(len(many), dtype=np.uint16), many) is None
