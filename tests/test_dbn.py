"""histetl.dbn: the framing, schema list and record layouts it states without a decoder agree
with databento_dbn and with Databento's own sample files."""

from __future__ import annotations

import io
import re
from pathlib import Path

import databento_dbn
import pytest
import zstandard

from histetl.dbn import (
    DBN_MAGIC,
    PRELUDE,
    RECORD_LENGTH_UNIT,
    RECORDS,
    SUPPORTED_SCHEMAS,
    ZSTD_MAGIC,
    ZSTD_SKIPPABLE,
    table_name,
)
from tests.conftest import sample_params


@pytest.mark.parametrize("schema", SUPPORTED_SCHEMAS)
def test_each_schema_names_a_databento_record_class_and_its_rtype(schema: str) -> None:
    class_name, rtypes = RECORDS[schema]

    assert hasattr(databento_dbn, class_name)
    rtype = databento_dbn.RType.from_schema(databento_dbn.Schema.from_str(schema))
    assert int(rtype) == rtypes[0]
    if schema.startswith("ohlcv-") and schema != "ohlcv-eod":
        assert rtypes[1] == int(databento_dbn.RType.OHLCV_DEPRECATED)


def test_the_schema_list_is_the_records_table_and_tables_use_underscores() -> None:
    assert tuple(RECORDS) == SUPPORTED_SCHEMAS
    assert len(set(SUPPORTED_SCHEMAS)) == 20
    assert [table_name(s) for s in ("mbp-1", "ohlcv-1m", "trades", "cbbo-1s")] == [
        "mbp_1",
        "ohlcv_1m",
        "trades",
        "cbbo_1s",
    ]


def test_zstd_magic_numbers_are_zstandards() -> None:
    assert int.from_bytes(ZSTD_MAGIC, "little") == zstandard.MAGIC_NUMBER
    frame = zstandard.ZstdCompressor().compress(b"DBN")
    assert frame[:4] == ZSTD_MAGIC
    # a skippable frame: any of the 16 magics from ZSTD_SKIPPABLE, a payload length, the payload
    skippable = (ZSTD_SKIPPABLE | 0x7).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"xyz"
    assert zstandard.get_frame_parameters(skippable).content_size == 3
    stream = io.BytesIO(skippable + frame)
    with zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True) as reader:
        assert reader.read() == b"DBN"


@pytest.mark.parametrize("path", sample_params())
def test_the_framing_reads_databentos_sample_files(path: Path) -> None:
    schema = path.name.split(".")[1]
    if schema not in RECORDS:
        pytest.skip(f"{schema} is not a supported schema")
    with zstandard.ZstdDecompressor().stream_reader(path.open("rb")) as reader:
        head = reader.read(1 << 20)
    magic, version, length = PRELUDE.unpack_from(head)
    assert magic == DBN_MAGIC
    stated = re.search(r"\.v(\d)\.", path.name)
    if stated:
        assert version == int(stated.group(1))
    first = head[PRELUDE.size + length :]
    if not first:
        pytest.skip("a header-only file")
    record_class = getattr(databento_dbn, f"v{version}")
    size = getattr(record_class, RECORDS[schema][0]).size_hint
    assert first[0] * RECORD_LENGTH_UNIT == size
    assert first[1] in RECORDS[schema][1]
