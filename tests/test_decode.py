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
    with pytest.raises(
        DecodeError, match=r"truncated: it ends inside a record, 28 trailing"
    ) as info:
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


def _zstd_frames(data: bytes, frames: int, checksum: bool) -> list[bytes]:
    compressor = zstandard.ZstdCompressor(write_checksum=checksum)
    step = -(-len(data) // frames)
    return [compressor.compress(data[i : i + step]) for i in range(0, len(data), step)]


def _truncation(path: Path) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        _decode_all(path)
    return info.value


@pytest.mark.parametrize("checksum", [False, True], ids=["no-checksum", "checksum"])
@pytest.mark.parametrize("frames", [1, 3])
@pytest.mark.parametrize("where", ["middle", "last block", "last bytes"])
def test_decode_when_zstd_stream_ends_inside_a_frame_says_truncated_at_the_offset(
    good_file: Path, tmp_path: Path, checksum: bool, frames: int, where: str
) -> None:
    compressed = b"".join(_zstd_frames(good_file.read_bytes(), frames, checksum))
    cut = {"middle": len(compressed) // 2, "last block": len(compressed) - 9}.get(
        where, len(compressed) - 1
    )
    path = tmp_path / "cut.dbn.zst"
    path.write_bytes(compressed[:cut])
    error = _truncation(path)
    assert "file is truncated: its zstd stream ends" in error.message
    assert f"{path} at byte {cut}" in error.message
    assert error.offset == cut


def test_decode_when_zstd_stream_ends_in_the_checksum_says_truncated(
    good_file: Path, tmp_path: Path
) -> None:
    compressed = _zstd_frames(good_file.read_bytes(), 1, checksum=True)[0]
    path = tmp_path / "cut.dbn.zst"
    path.write_bytes(compressed[:-2])  # every block is there, the checksum is not
    assert "in the content checksum of the frame at byte 0" in _truncation(path).message


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 7, 8])
def test_decode_when_zstd_file_ends_before_its_first_block_says_truncated(
    good_file: Path, tmp_path: Path, cut: int
) -> None:
    compressed = zstandard.ZstdCompressor().compress(good_file.read_bytes())
    path = tmp_path / "head.dbn.zst"
    path.write_bytes(compressed[:cut])
    with pytest.raises(DecodeError, match="file is truncated") as info:
        DbnFile(path)
    assert "not a DBN file" not in info.value.message
    assert info.value.offset == cut


def test_decode_of_multi_frame_and_skippable_frames_equals_one_frame(
    good_file: Path, tmp_path: Path
) -> None:
    skippable = (0x184D2A5A).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"notes"
    frames = _zstd_frames(good_file.read_bytes(), 4, checksum=True)
    path = tmp_path / "multi.dbn.zst"
    path.write_bytes(skippable + skippable.join(frames) + skippable)
    assert read_table(path, batch_size=100).equals(read_table(good_file))


def test_decode_when_zstd_stream_ends_inside_a_skippable_frame_says_truncated(
    good_file: Path, tmp_path: Path
) -> None:
    skippable = (0x184D2A50).to_bytes(4, "little") + (64).to_bytes(4, "little")
    path = tmp_path / "skip.dbn.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(good_file.read_bytes()) + skippable)
    assert "in the skippable frame at byte" in _truncation(path).message


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (0, "file is empty"),
        (2, "file is truncated: it ends after 2 bytes, inside the DBN prelude"),
        (7, "file is truncated: it ends after 7 bytes, inside the DBN prelude"),
        (8, r"file is truncated: it ends inside the metadata header \(0 of 424 bytes\)"),
        (200, r"file is truncated: it ends inside the metadata header \(192 of 424 bytes\)"),
    ],
)
def test_decode_when_plain_file_ends_in_the_header_says_truncated_at_the_offset(
    good_file: Path, tmp_path: Path, cut: int, message: str
) -> None:
    path = tmp_path / "cut.dbn"
    path.write_bytes(good_file.read_bytes()[:cut])
    with pytest.raises(DecodeError, match=message) as info:
        DbnFile(path)
    assert info.value.offset == cut


def _with_metadata_length(header: bytes, length: int) -> bytes:
    return header[:4] + length.to_bytes(4, "little") + header[8:]


def test_decode_when_plain_metadata_length_exceeds_the_file_refuses_before_reading(
    good_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "long.dbn"
    path.write_bytes(_with_metadata_length(good_file.read_bytes(), 2**32 - 1))
    with pytest.raises(DecodeError, match=r"inside the metadata header \(48,\d+ of 4,294,"):
        DbnFile(path)


def test_decode_when_plain_metadata_length_is_huge_refuses_it_before_reading(
    good_file: Path, tmp_path: Path
) -> None:
    path = tmp_path / "long.dbn"
    with path.open("wb") as out:  # a file that could hold it: 600 MiB, sparse
        out.write(_with_metadata_length(good_file.read_bytes(), 600 << 20))
        out.truncate(601 << 20)
    with pytest.raises(DecodeError, match=r"declares 629,145,600 bytes of metadata, more than"):
        DbnFile(path)


def test_decode_when_zstd_metadata_length_is_huge_refuses_it(
    good_file: Path, tmp_path: Path
) -> None:
    # a 4 GiB length over 64 MiB of zeros: compresses to a few KB, decompresses without end
    data = _with_metadata_length(good_file.read_bytes()[:8], 2**32 - 1) + bytes(64 << 20)
    path = tmp_path / "bomb.dbn.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(data))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(DecodeError, match=r"declares 4,294,967,295 bytes of metadata, more than"):
        DbnFile(path)


# Offsets in a v3 header of one requested symbol, no partial or not-found symbols, and one
# mapping of two intervals (what SynthSpec writes by default).
_COUNTS = {"symbols": 112, "partial": 187, "not_found": 191, "mappings": 195, "intervals": 270}


@pytest.mark.parametrize("field", sorted(_COUNTS))
@pytest.mark.parametrize("count", [2**31 - 1, 2**32 - 1])
def test_decode_when_a_metadata_count_is_huge_fails_cleanly(
    good_file: Path, tmp_path: Path, field: str, count: int
) -> None:
    data = bytearray(good_file.read_bytes())
    data[_COUNTS[field] : _COUNTS[field] + 4] = count.to_bytes(4, "little")
    path = tmp_path / "count.dbn"
    path.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match=f"corrupt metadata header: .*declares {count}"):
        DbnFile(path)


@pytest.mark.parametrize("length", [0, 0xFFFF])
def test_decode_when_symbol_length_is_corrupt_fails_cleanly(
    good_file: Path, tmp_path: Path, length: int
) -> None:
    data = bytearray(good_file.read_bytes())
    data[53:55] = length.to_bytes(2, "little")  # symbol_cstr_len
    path = tmp_path / "cstr.dbn"
    path.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="corrupt metadata header"):
        DbnFile(path)


def test_decode_when_record_length_byte_is_corrupt_names_offset(
    good_file: Path, tmp_path: Path
) -> None:
    data = bytearray(good_file.read_bytes())
    with DbnFile(good_file) as dbn:
        header = dbn.header_length
    data[header + 7 * 48] = 255  # the length byte (in 4-byte words) of record 7
    path = tmp_path / "length.dbn"
    path.write_bytes(bytes(data))
    with pytest.raises(DecodeError, match="length 1020 where schema trades needs") as info:
        _decode_all(path)
    assert info.value.offset == header + 7 * 48


def test_progress_of_zstd_file_follows_the_decoded_records_not_the_read_ahead(
    tmp_path: Path,
) -> None:
    path = tmp_path / "big.dbn.zst"
    records = 300_000  # 14 MB decoded: several read-ahead chunks
    write_dbn(SynthSpec(schema="trades", records=records, seed=4), path)
    seen = []
    with DbnFile(path) as dbn:
        for batch in dbn.batches(batch_size=10_000, with_hash=False):
            seen.append((len(seen) + 1) * batch.num_rows)
            fraction = dbn.progress(seen[-1])
            # the read-ahead has read at least one 4 MiB chunk (about 28 % of the file)
            assert abs(fraction - seen[-1] / records) < 0.03, (seen[-1], fraction)
        assert dbn.progress(records) == 1.0


def test_progress_of_plain_file_is_exact(good_file: Path) -> None:
    with DbnFile(good_file) as dbn:
        total = dbn.size - dbn.header_length
        assert dbn.progress(500) == (dbn.header_length + 500 * 48) / dbn.size
        assert dbn.progress(total // 48) == 1.0


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
