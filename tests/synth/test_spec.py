"""histetl.synth.spec: record layouts from databento_dbn, and the specs it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from histetl.synth import (
    SUPPORTED_SCHEMAS,
    Defects,
    Shapes,
    SynthSpec,
    index_field,
    record_class,
    record_dtype,
    write_dbn,
)
from histetl.synth.spec import _validate


def test_layouts_come_from_databento_dbn() -> None:
    for schema in SUPPORTED_SCHEMAS:
        for version in (1, 2, 3):
            cls = record_class(schema, version)
            assert record_dtype(schema, version).itemsize == cls.size_hint
    assert record_class("statistics", 1).__name__ == "StatMsgV1"
    assert record_dtype("statistics", 2)["quantity"] == np.dtype("i4")
    assert record_dtype("statistics", 3)["quantity"] == np.dtype("i8")
    assert record_class("definition", 2).__name__ == "InstrumentDefMsgV2"
    assert index_field("ohlcv-1m") == "ts_event"
    assert index_field("mbp-1") == "ts_recv"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            SynthSpec(schema="trades", records=10, defects=Defects(high_below_low=1)),
            "high_below_low",
        ),
        (
            SynthSpec(schema="ohlcv-1m", records=10, defects=Defects(crossed_quotes=1)),
            "crossed_quotes",
        ),
        (SynthSpec(schema="status", records=10, defects=Defects(zero_size=1)), "zero_size"),
        (
            SynthSpec(schema="statistics", records=10, defects=Defects(missing_price=1)),
            "missing_price",
        ),
        (SynthSpec(schema="ohlcv-1s", records=10, shared_key_trades=1), "shared_key_trades"),
        (SynthSpec(schema="ohlcv-1d", records=3), "at most 2"),
        (SynthSpec(schema="trades", records=2, defects=Defects(zero_size=3)), "only 2 records"),
        (SynthSpec(schema="mbp-20", records=1), "unsupported schema"),
        (SynthSpec(schema="trades", records=1, version=4), "version"),
        (SynthSpec(schema="trades", records=1, symbols=("ESH4",)), "continuous"),
        (SynthSpec(schema="trades", records=1, symbols=("ES.c.0",), stype_in="parent"), "parent"),
    ],
)
def test_invalid_specs_raise(tmp: Path, spec: SynthSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_dbn(spec, tmp / "invalid.dbn")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (SynthSpec(schema="trades", records=5, shapes=Shapes(no_last_trade=1)), "no_last_trade"),
        (
            SynthSpec(schema="tbbo", records=5, shapes=Shapes(sideless_book_updates=1)),
            "sideless_book_updates",
        ),
        (SynthSpec(schema="mbo", records=2, shapes=Shapes(book_clears=3)), "only 2 records"),
        (SynthSpec(schema="ohlcv-eod", records=1, version=2), "version 3 only"),
    ],
)
def test_shape_that_does_not_fit_the_schema_raises(
    tmp: Path, spec: SynthSpec, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        write_dbn(spec, tmp / "bad-shape.dbn")


def test_record_helpers_refuse_unknown_schemas_and_versions() -> None:
    with pytest.raises(ValueError, match="unsupported schema 'mbp-20'; expected one of"):
        record_class("mbp-20")
    with pytest.raises(ValueError, match="unsupported DBN version 4; expected 1, 2 or 3"):
        record_dtype("trades", 4)


def test_counts_list_every_defect_and_shape_in_field_order() -> None:
    assert Defects(zero_size=2, unmapped_instrument=1).counts() == {
        "crossed_quotes": 0,
        "locked_quotes": 0,
        "high_below_low": 0,
        "zero_size": 2,
        "missing_price": 0,
        "bad_timestamp": 0,
        "exact_duplicates": 0,
        "unmapped_instrument": 1,
    }
    assert Shapes(book_clears=3).counts() == {
        "no_last_trade": 0,
        "sideless_book_updates": 0,
        "book_clears": 3,
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (SynthSpec(schema="trades", records=-1), "records, seed and shared_key_trades"),
        (SynthSpec(schema="trades", records=1, days=0), "days >= 1"),
        (SynthSpec(schema="trades", records=1, symbols=()), "symbols must be non-empty"),
        (
            SynthSpec(schema="trades", records=1, symbols=("ES.c.0", "ES.c.0")),
            "symbols must be non-empty and distinct: \\('ES.c.0', 'ES.c.0'\\)",
        ),
        (SynthSpec(schema="trades", records=1, stype_in="isin"), "unsupported stype_in 'isin'"),
        (SynthSpec(schema="trades", records=5, defects=Defects(zero_size=-1)), "zero_size must"),
        (SynthSpec(schema="mbo", records=5, shapes=Shapes(book_clears=-2)), "book_clears must"),
        (
            SynthSpec(
                schema="trades", records=4, defects=Defects(zero_size=2), shared_key_trades=3
            ),
            "5 defect/shared-key/shape rows requested but only 4 records",
        ),
    ],
)
def test_validate_names_what_is_wrong(spec: SynthSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _validate(spec)
