"""Canonical tables: the columns and their order are databento's `to_df` columns, the key
leads with the index timestamp, and the light schema list (histetl.dbn) is the decoder's."""

from __future__ import annotations

from pathlib import Path

import databento
import pyarrow as pa
import pytest

from histetl import dbn
from histetl.schemas import HASH_COLUMN, PRICE_TYPE, SYMBOL_COLUMN, TS_TYPE, all_specs, table_spec
from histetl.synth import SynthSpec, write_dbn

SMALL = {"ohlcv-1h": 5, "ohlcv-1d": 2, "ohlcv-eod": 2}


@pytest.mark.parametrize("schema", dbn.SUPPORTED_SCHEMAS)
def test_columns_are_databentos_to_df_columns_in_order(tmp_path: Path, schema: str) -> None:
    path = tmp_path / "f.dbn"
    write_dbn(SynthSpec(schema=schema, records=SMALL.get(schema, 20)), path)
    frame = databento.DBNStore.from_bytes(path.read_bytes()).to_df(map_symbols=True)
    theirs = [frame.index.name, *frame.columns]
    spec = table_spec(schema)
    ours = [c for c in spec.column_names if c != HASH_COLUMN]
    # every databento column, in databento's order; histetl keeps more (fields DBN v3 dropped,
    # tcbbo's action and ts_in_delta), all of them nullable
    assert [c for c in ours if c in theirs] == theirs
    extra = [c for c in ours if c not in theirs]
    assert all(spec.arrow_schema.field(c).nullable for c in extra)
    assert spec.key == (spec.index_ts, "instrument_id", HASH_COLUMN)
    assert spec.index_ts == frame.index.name
    assert SYMBOL_COLUMN in spec.column_names
    assert spec.table == dbn.table_name(schema) == schema.replace("-", "_")


def test_types_are_exact() -> None:
    trades = table_spec("trades").arrow_schema
    assert trades.field("price").type == PRICE_TYPE == pa.decimal128(19, 9)
    assert trades.field("ts_event").type == TS_TYPE
    assert not trades.field("ts_recv").nullable  # a key column
    assert trades.field("size").type == pa.uint32()


def test_the_light_schema_list_is_the_decoders() -> None:
    assert [s.schema for s in all_specs()] == list(dbn.SUPPORTED_SCHEMAS)
    with pytest.raises(KeyError, match="ohlcv-7m"):
        table_spec("ohlcv-7m")
