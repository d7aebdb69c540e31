"""histetl.synth.core: the defect plan and the ordinals it reports, the interval grid, the
random walks, latencies and sequence numbers every schema uses, and the record templates."""

from __future__ import annotations

from pathlib import Path

import databento_dbn as dbn
import numpy as np
import pytest

from histetl.synth import Defects, Shapes, SynthSpec, record_class
from histetl.synth.core import _Core
from histetl.synth.universe import _rng

PLANNED = Defects(zero_size=4, missing_price=3, bad_timestamp=2, exact_duplicates=5)
SPEC = SynthSpec(
    schema="mbp-1",
    records=1_000,
    defects=PLANNED,
    shared_key_trades=6,
    shapes=Shapes(sideless_book_updates=7, book_clears=2),
    seed=11,
)


def test_the_plan_picks_disjoint_sorted_rows_of_each_requested_size() -> None:
    core = _Core(SPEC)

    wanted = {**PLANNED.counts(), "shared_key_trades": 6, **SPEC.shapes.counts()}
    assert {name: rows.size for name, rows in core.plan.items()} == wanted
    every = np.concatenate(list(core.plan.values()))
    assert np.unique(every).size == every.size == sum(wanted.values())
    assert all((np.diff(rows) > 0).all() for rows in core.plan.values())
    assert every.min() >= 0
    assert every.max() < SPEC.records
    inserted = np.concatenate([core.plan["exact_duplicates"], core.plan["shared_key_trades"]])
    assert core.inserts.tolist() == sorted(inserted.tolist())
    # the plan depends on the seed only
    again = _Core(SPEC).plan
    assert all((rows == again[name]).all() for name, rows in core.plan.items())


def test_final_ordinals_shift_past_the_rows_inserted_before() -> None:
    core = _Core(SynthSpec(schema="trades", records=10))
    core.inserts = np.array([2, 5], dtype=np.int64)  # copies after base rows 2 and 5

    final = core.final_ordinals(np.array([0, 2, 3, 5, 6, 9], dtype=np.int64))

    assert final.tolist() == [0, 2, 4, 6, 8, 11]


def test_result_reports_the_copy_of_a_duplicate_and_the_second_fill_of_a_shared_key(
    tmp_path: Path,
) -> None:
    core = _Core(SPEC)

    result = core.result(tmp_path / "x.dbn")

    assert result.path == tmp_path / "x.dbn"
    assert result.records == 1_000 + 5 + 6
    assert (result.metadata_start, result.metadata_end) == (core.start_ns, core.end_ns)
    dups = core.final_ordinals(core.plan["exact_duplicates"]) + 1
    assert result.defect_rows["exact_duplicates"].tolist() == dups.tolist()
    shared = core.final_ordinals(core.plan["shared_key_trades"]) + 1
    assert result.shared_key_rows.tolist() == shared.tolist()
    zero = core.final_ordinals(core.plan["zero_size"])
    assert result.defect_rows["zero_size"].tolist() == zero.tolist()
    assert set(result.defect_rows) == set(PLANNED.counts())
    assert {n: r.size for n, r in result.shape_rows.items()} == SPEC.shapes.counts()


def test_a_grid_schema_refuses_more_bars_than_the_sessions_hold() -> None:
    assert _Core(SynthSpec(schema="ohlcv-1h", records=45)).grid_offsets[-1] == 45

    with pytest.raises(ValueError, match=r"ohlcv-1h: at most 45 bars/samples fit in 2 day\(s\)"):
        _Core(SynthSpec(schema="ohlcv-1h", records=46))


def test_the_walk_stays_on_ticks_above_its_floor_and_carries_across_blocks() -> None:
    core = _Core(SynthSpec(schema="trades", records=10, symbols=("ES.c.0", "NQ.c.0")))
    start = core.level.copy()
    inst = np.array([0, 1, 0, 0, 1, 2, 2, 0] * 500, dtype=np.int64)

    first = core._walk(inst, _rng(1, 1))
    after_first = core.level.copy()
    second = core._walk(inst, _rng(1, 2))

    for c in range(3):
        levels = np.concatenate([first[inst == c], second[inst == c]])
        steps = np.diff(np.concatenate([[start[c]], levels]))
        assert set(np.unique(steps).tolist()) <= {-1, 0, 1}  # one tick at a time
        assert (levels >= core.floor[c]).all()
        assert after_first[c] == first[inst == c][-1]
    assert core.level[3] == start[3]  # a contract without records keeps its level


def test_latency_and_sequence() -> None:
    core = _Core(SynthSpec(schema="trades", records=10))
    ts_recv = core.start_ns + np.arange(0, 10**9, 10**5, dtype=np.int64)

    ts_event, delta = core._latency(ts_recv, _rng(0, 1))
    first = core._sequence(100, _rng(0, 2))
    second = core._sequence(100, _rng(0, 3))

    lag = ts_recv - ts_event
    assert (lag >= 0).all()
    assert (ts_event >= core.start_ns).all()
    assert lag.max() < 400_000
    assert (lag[ts_event > core.start_ns] >= 2_000).all()
    assert ((delta >= 0) & (delta < lag + 1)).all()
    sequence = np.concatenate([first, second])
    assert (np.diff(sequence) >= 1).all()
    assert (np.diff(sequence) <= 3).all()


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("schema", ["mbp-1", "statistics", "definition", "ohlcv-1m"])
def test_the_template_is_the_record_class_default_with_rtype_publisher_and_length(
    schema: str, version: int
) -> None:
    core = _Core(SynthSpec(schema=schema, records=1, version=version))

    (template,) = core.template

    assert int(template["length"]) * 4 == record_class(schema, version).size_hint
    assert template["rtype"] == int(dbn.RType.from_schema(dbn.Schema.from_str(schema)))
    assert template["publisher_id"] == 1  # GLBX.MDP3
    if schema == "definition":
        assert template["expiration"] == dbn.UNDEF_TIMESTAMP
        assert template["strike_price"] == dbn.UNDEF_PRICE
        int32_max = np.iinfo(np.int32).max
        assert template["contract_multiplier"] == int32_max
    if schema == "statistics":
        width = np.iinfo(template["quantity"].dtype).max
        assert template["quantity"] == (width if version < 3 else dbn.UNDEF_STAT_QUANTITY)
