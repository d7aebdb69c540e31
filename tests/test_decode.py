from __future__ import annotations

import decimal
from pathlib import Path

import databento_dbn
import numpy as np
import pyarrow as pa
import pytest
import zstandard

from histetl.decode import DbnFile, read_table, record_hash
from histetl.errors import DecodeError, UnsupportedSchemaError
from histetl.schemas import PRICE_TYPE, SUPPORTED_SCHEMAS, TS_TYPE, table_spec
from histetl.synth import SUPPORTED_SCHEMAS as SYNTH_SCHEMAS
from histetl.synth import SynthSpec, write_dbn
from tests.conftest import sample_params
from tests.reference import decode_with_symbols, mismatches

GENERATED = SYNTH_SCHEMAS  # every schema the generator writes

# bars: one per instrument and interval, so coarse schemas fit fewer records into a few days
SMALL = {"ohlcv-1h": 40, "ohlcv-1d": 3, "ohlcv-eod": 3}


@pytest.mark.parametrize("path", sample_params())
def test_decode_of_databento_sample_equals_databento_to_df(path: Path) -> None:
    schema = str(databento_dbn.Metadata.decode(_header(path)).schema)
    if schema not in SUPPORTED_SCHEMAS:
        with pytest.raises(UnsupportedSchemaError, match=f"unsupported schema {schema}"):
            DbnFile(path)
        return
    assert mismatches(path) == []


@pytest.mark.parametrize("schema", GENERATED)
@pytest.mark.parametrize("suffix", [".dbn", ".dbn.zst"])
def test_decode_of_generated_file_equals_databento_to_df(
    tmp_path: Path, schema: str, suffix: str
) -> None:
    path = tmp_path / f"gen{suffix}"
    write_dbn(SynthSpec(schema=schema, records=SMALL.get(schema, 300), days=5, seed=7), path)
    assert mismatches(path) == []


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("schema", ["trades", "definition", "statistics", "ohlcv-1m", "mbp-1"])
def test_decode_of_older_dbn_versions_equals_databento_to_df(
    tmp_path: Path, schema: str, version: int
) -> None:
    path = tmp_path / "old.dbn"
    write_dbn(
        SynthSpec(schema=schema, records=SMALL.get(schema, 50), days=5, seed=3, version=version),
        path,
    )
    with DbnFile(path) as dbn:
        assert dbn.version == version
    assert mismatches(path) == []


def test_decode_when_batch_size_is_one_yields_same_table(tmp_path: Path) -> None:
    path = tmp_path / "t.dbn.zst"
    write_dbn(SynthSpec(schema="tbbo", records=57, seed=1), path)
    whole, _ = decode_with_symbols(path)
    one_by_one, _ = decode_with_symbols(path, batch_size=1)
    assert one_by_one.equals(whole)
    with DbnFile(path) as dbn:
        sizes = [b.num_rows for b in dbn.batches(batch_size=10)]
    assert sizes == [10, 10, 10, 10, 10, 7]
    assert mismatches(path, batch_size=1) == []


def test_decode_types_are_exact(tmp_path: Path) -> None:
    path = tmp_path / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=20, seed=1), path)
    table = read_table(path)
    assert table.schema.field("price").type == PRICE_TYPE
    assert table.schema.field("ts_recv").type == TS_TYPE
    assert table.schema.field("size").type == pa.uint32()
    raw = databento_dbn_records(path)
    prices = [int(p * 10**9) for p in table.column("price").to_pylist()]
    assert prices == raw["price"].tolist()
    ns = table.column("ts_recv").cast(pa.int64()).to_pylist()
    assert ns == raw["ts_recv"].astype(np.int64).tolist()  # nanoseconds kept


def test_decode_maps_every_sentinel_to_null(tmp_path: Path) -> None:
    path = tmp_path / "q.dbn"
    write_dbn(SynthSpec(schema="mbp-1", records=5000, seed=5), path)
    raw = databento_dbn_records(path)
    table = read_table(path)
    undefined = {
        side: raw[side] == databento_dbn.UNDEF_PRICE for side in ("bid_px_00", "ask_px_00")
    }
    assert any(u.any() for u in undefined.values()), "the generator makes empty book sides"
    for side, undef in undefined.items():
        assert np.array_equal(table.column(side).is_null().to_numpy(zero_copy_only=False), undef)
    stats = tmp_path / "s.dbn"
    write_dbn(SynthSpec(schema="statistics", records=200, seed=5), stats)
    raw_stats = databento_dbn_records(stats)
    stat_table = read_table(stats)
    no_quantity = raw_stats["quantity"] == databento_dbn.UNDEF_STAT_QUANTITY
    assert no_quantity.any()
    assert np.array_equal(
        stat_table.column("quantity").is_null().to_numpy(zero_copy_only=False), no_quantity
    )
    defs = tmp_path / "d.dbn"
    write_dbn(
        SynthSpec(
            schema="definition",
            records=20,
            seed=5,
            dataset="XNAS.ITCH",
            symbols=("AAPL", "MSFT"),
            stype_in="raw_symbol",
        ),
        defs,
    )
    raw_defs = databento_dbn_records(defs)
    def_table = read_table(defs)
    undef_ts = raw_defs["expiration"] == databento_dbn.UNDEF_TIMESTAMP
    assert np.array_equal(
        def_table.column("expiration").is_null().to_numpy(zero_copy_only=False), undef_ts
    )
    for value in def_table.column("min_price_increment").to_pylist():
        assert value is None or isinstance(value, decimal.Decimal)


def test_decode_keeps_distinct_records_of_one_packet(tmp_path: Path) -> None:
    path = tmp_path / "p.dbn"
    result = write_dbn(SynthSpec(schema="trades", records=100, seed=2, shared_key_trades=10), path)
    table = read_table(path)
    keys = table.select(["instrument_id", "ts_recv", "ts_event", "sequence"]).to_pylist()
    assert len({tuple(k.values()) for k in keys}) < table.num_rows  # keys really shared
    hashes = table.column("record_hash").to_pylist()
    assert len(set(hashes)) == table.num_rows == result.records


def test_record_hash_is_stable_and_content_based() -> None:
    dtype = np.dtype(databento_dbn.TradeMsg._dtypes)
    records = np.zeros(3, dtype=dtype)
    records["price"] = [1, 1, 2]
    hashes = record_hash(records)
    assert hashes[0] == hashes[1] != hashes[2]
    assert record_hash(records.copy())[2] == hashes[2]


# -- corrupt and truncated input ---------------------------------------------------------------


@pytest.fixture
def good_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.dbn"
    write_dbn(SynthSpec(schema="trades", records=1000, seed=9), path)
    return path


def _decode_all(path: Path) -> None:
    with DbnFile(path) as dbn:
        for _ in dbn.batches(batch_size=64):
            pass


def test_decode_when_file_truncated_names_file_and_offset(good_file: Path, tmp_path: Path) -> None:
    data = good_file.read_bytes()
    cut = tmp_path / "cut.dbn"
    cut.write_bytes(data[:-20])
    with DbnFile(good_file) as dbn:
        header = dbn.header_length
    last_record = header + 999 * 48
    with pytest.raises(DecodeError, match=r"file ends inside a record: 28 trailing bytes") as info:
        _decode_all(cut)
    assert info.value.offset == last_record
    assert str(cut) in info.value.message


def test_decode_when_record_has_wrong_rtype_names_offset(good_file: Path, tmp_path: Path) -> None:
    data = bytearray(good_file.read_bytes())
    with DbnFile(good_file) as dbn:
        header = dbn.header_length
    data[header + 500 * 48 + 1] = 99  # rtype byte of record 500
    bad = tmp_path / "bad.dbn"
    bad.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="rtype 99") as info:
        _decode_all(bad)
    assert info.value.offset == header + 500 * 48


def test_decode_when_not_dbn_says_so(tmp_path: Path) -> None:
    path = tmp_path / "x.dbn"
    path.write_bytes(b"PK\x03\x04 definitely a zip")
    with pytest.raises(DecodeError, match="not a DBN file") as info:
        DbnFile(path)
    assert info.value.offset == 0


def test_decode_when_header_truncated(good_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "h.dbn"
    path.write_bytes(good_file.read_bytes()[:30])
    with pytest.raises(DecodeError, match="inside the metadata header"):
        DbnFile(path)


def test_decode_when_zstd_frame_corrupt(good_file: Path, tmp_path: Path) -> None:
    compressor = zstandard.ZstdCompressor(write_checksum=True)
    compressed = bytearray(compressor.compress(good_file.read_bytes()))
    for i in range(len(compressed) // 2, len(compressed) // 2 + 16):
        compressed[i] ^= 0xFF
    path = tmp_path / "z.dbn.zst"
    path.write_bytes(bytes(compressed))
    with pytest.raises(DecodeError, match=r"zstd|rtype|record") as info:
        _decode_all(path)
    assert str(path) in info.value.message


def test_decode_when_zstd_stream_cut_short(good_file: Path, tmp_path: Path) -> None:
    compressed = zstandard.ZstdCompressor().compress(good_file.read_bytes())
    path = tmp_path / "short.dbn.zst"
    path.write_bytes(compressed[: len(compressed) - 40])
    with pytest.raises(DecodeError, match=str(path)):
        _decode_all(path)


def test_decode_of_unsupported_version_is_clear(good_file: Path, tmp_path: Path) -> None:
    data = bytearray(good_file.read_bytes())
    data[3] = 9
    path = tmp_path / "v9.dbn"
    path.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="DBN version 9 is not supported"):
        DbnFile(path)


def test_table_specs_have_to_df_columns_plus_symbol() -> None:
    spec = table_spec("trades")
    assert spec.column_names == (
        "ts_recv",
        "ts_event",
        "rtype",
        "publisher_id",
        "instrument_id",
        "action",
        "side",
        "depth",
        "price",
        "size",
        "flags",
        "ts_in_delta",
        "sequence",
        "record_hash",
        "symbol",
    )
    assert spec.key == ("ts_recv", "instrument_id", "record_hash")
    assert table_spec("ohlcv-1m").key[0] == "ts_event"
    definition = table_spec("definition").column_names
    assert "trading_reference_price" in definition  # v1/v2 field kept, nothing lost
    assert "leg_raw_symbol" in definition


# -- helpers -------------------------------------------------------------------------------------


def _header(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        raw = zstandard.ZstdDecompressor().stream_reader(raw).read(1 << 20)
    length = int.from_bytes(raw[4:8], "little")
    return raw[: 8 + length]


def databento_dbn_records(path: Path) -> np.ndarray:
    import databento

    return databento.DBNStore.from_bytes(path.read_bytes()).to_ndarray()
