"""histetl.synth.market: quote schemas with realistic empty book sides."""

from __future__ import annotations

from pathlib import Path

from histetl.synth import (
    SynthSpec,
    write_dbn,
)
from tests.synth.common import (
    DATABENTO_WARNINGS,
    QUOTES,
    UNDEF_PRICE,
    read,
)

pytestmark = DATABENTO_WARNINGS


def test_quote_schemas_have_empty_book_sides_with_zero_size(tmp: Path) -> None:
    for schema in QUOTES:
        _, arr = read(
            write_dbn(SynthSpec(schema=schema, records=300), tmp / f"s-{schema}.dbn").path
        )
        empty_bid = arr["bid_px_00"] == UNDEF_PRICE
        empty_ask = arr["ask_px_00"] == UNDEF_PRICE
        assert empty_bid.any(), schema
        assert empty_ask.any(), schema
        assert (arr["bid_sz_00"][empty_bid] == 0).all()
        assert (arr["ask_sz_00"][empty_ask] == 0).all()
