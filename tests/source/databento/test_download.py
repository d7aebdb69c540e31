"""histetl.source.databento.download: a download is checked (zstd frames end, the DBN header is
whole, no partial record, the records counted) before it is kept, and a chunk is complete only
with a matching manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import zstandard

from histetl.dbn import PRELUDE
from histetl.errors import SourceError
from histetl.jobs import Chunk
from histetl.source.databento.client import DatabentoApi
from histetl.source.databento.download import (
    Manifest,
    chunk_state,
    data_path,
    fetch_chunk,
    inspect_download,
    manifest_path,
    part_path,
)
from histetl.source.databento.plan import ChunkPlan
from histetl.synth import SynthSpec, write_dbn
from tests.source.databento.conftest import RECORDS, chunks
from tests.support.fake_gateway import FakeGateway, Scripted

N = 100
RECORD = 48  # bytes of one trade record


@pytest.fixture(scope="module")
def dbn(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A plain DBN file of N trades."""
    path = tmp_path_factory.mktemp("dbn") / "t.dbn"
    write_dbn(SynthSpec(schema="trades", records=N, seed=1), path)
    return path.read_bytes()


def header_len(data: bytes) -> int:
    return PRELUDE.size + PRELUDE.unpack_from(data)[2]


def zst(tmp_path: Path, *parts: bytes) -> Path:
    """A .dbn.zst file with one zstd frame per part."""
    path = tmp_path / "x.dbn.zst"
    path.write_bytes(b"".join(zstandard.ZstdCompressor().compress(p) for p in parts))
    return path


def test_a_complete_file_is_counted_hashed_and_sized(dbn: bytes, tmp_path: Path) -> None:
    path = zst(tmp_path, dbn)
    check = inspect_download(path)
    assert (check.records, check.complete, check.problem) == (N, True, None)
    assert check.bytes == path.stat().st_size
    assert check.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_frames_split_anywhere_count_as_one_stream(dbn: bytes, tmp_path: Path) -> None:
    cuts = [5, header_len(dbn) + 7, len(dbn) - RECORD - 3]  # in the header, inside records
    parts = [dbn[a:b] for a, b in zip([0, *cuts], [*cuts, len(dbn)], strict=True)]
    check = inspect_download(zst(tmp_path, *parts))
    assert (check.records, check.problem) == (N, None)


def test_a_header_without_records_is_a_complete_empty_chunk(dbn: bytes, tmp_path: Path) -> None:
    check = inspect_download(zst(tmp_path, dbn[: header_len(dbn)]))
    assert (check.records, check.complete, check.problem) == (0, True, None)


@pytest.mark.parametrize(
    ("make", "records", "problem"),
    [
        (lambda d: [d[: header_len(d) - 3]], 0, "ends inside the DBN header"),
        (lambda d: [d[:10]], 0, "ends inside the DBN header"),
        (lambda d: [d[:-10]], N - 1, "ends inside a record"),
        (lambda d: [b"PAR1" + d[3:]], 0, "not a DBN stream"),
        (  # one record claims another length
            lambda d: [d[: header_len(d)] + d[header_len(d) : -RECORD] + b"\x10" + d[-47:]],
            0,
            "records of mixed lengths",
        ),
        (  # a record of length 0
            lambda d: [d[: header_len(d)] + b"\x00" + d[header_len(d) + 1 :]],
            0,
            "record of length 0",
        ),
    ],
    ids=["cut-in-header", "cut-in-prelude", "cut-in-record", "not-dbn", "mixed", "zero-length"],
)
def test_an_incomplete_or_foreign_stream_names_its_problem(
    make: object, records: int, problem: str, dbn: bytes, tmp_path: Path
) -> None:
    check = inspect_download(zst(tmp_path, *make(dbn)))  # type: ignore[operator]
    assert (check.records, check.complete, check.problem) == (records, False, problem)


def test_a_zstd_frame_cut_off_is_never_complete(dbn: bytes, tmp_path: Path) -> None:
    path = zst(tmp_path, dbn)
    path.write_bytes(path.read_bytes()[:-20])
    check = inspect_download(path)
    assert (check.complete, check.problem) == (False, "zstd frame cut off")


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "empty file"), (b"DBN\x03 plain, not compressed", "not zstd-compressed")],
    ids=["empty", "plain"],
)
def test_an_empty_or_uncompressed_file_is_refused(
    content: bytes, problem: str, tmp_path: Path
) -> None:
    path = tmp_path / "x.dbn.zst"
    path.write_bytes(content)
    check = inspect_download(path)
    assert (check.records, check.complete, check.problem) == (0, False, problem)


def test_garbage_after_a_frame_is_a_zstd_error(dbn: bytes, tmp_path: Path) -> None:
    path = zst(tmp_path, dbn)
    path.write_bytes(path.read_bytes() + b"\x28\xb5\x2f\xfd garbage that is no frame")
    check = inspect_download(path)
    assert check.complete is False
    assert check.problem is not None
    assert check.problem.startswith("zstd: ")


# -- chunk status -----------------------------------------------------------------------------


def manifest_for(chunk: Chunk, size: int) -> Manifest:
    return Manifest(
        job=chunk.job,
        file=data_path(Path("raw"), chunk).name,
        request=chunk.request(),
        sha256="0" * 64,
        bytes=size,
        records=3,
        cost_usd=0.5,
        fetched_at="2023-12-18T00:00:00+00:00",
        gateway="https://127.0.0.1",
    )


def place(raw: Path, chunk: Chunk, content: bytes, manifest: Manifest | None) -> None:
    path = data_path(raw, chunk)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    if manifest is not None:
        manifest_path(raw, chunk).write_text(manifest.to_json(), encoding="utf-8")


def test_chunk_state_is_complete_only_with_a_manifest_of_this_request_and_size(
    tmp_path: Path,
) -> None:
    raw = tmp_path / "raw"
    chunk, other = chunks()[:2]
    assert chunk_state(raw, chunk).status == "missing"

    place(raw, chunk, b"12345", manifest_for(chunk, 5))
    state = chunk_state(raw, chunk)
    assert state.status == "complete"
    assert state.manifest == manifest_for(chunk, 5)
    assert Manifest.read(manifest_path(raw, chunk)) == manifest_for(chunk, 5)

    place(raw, chunk, b"1234", None)  # the file changed size
    assert chunk_state(raw, chunk).status == "partial"
    place(raw, chunk, b"12345", manifest_for(other, 5))  # the manifest of another request
    assert chunk_state(raw, chunk).status == "partial"
    place(raw, chunk, b"12345", None)
    manifest_path(raw, chunk).write_text("{not json", encoding="utf-8")
    assert Manifest.read(manifest_path(raw, chunk)) is None
    assert chunk_state(raw, chunk).status == "partial"


def test_chunk_state_is_partial_with_a_part_file_or_a_manifest_alone(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    chunk = chunks()[0]
    part = part_path(raw, chunk)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"half")
    assert chunk_state(raw, chunk).status == "partial"
    part.unlink()
    manifest_path(raw, chunk).write_text(manifest_for(chunk, 5).to_json(), encoding="utf-8")
    assert chunk_state(raw, chunk).status == "partial"  # no data file


def test_a_manifest_of_another_format_is_unreadable(tmp_path: Path) -> None:
    chunk = chunks()[0]
    data = json.loads(manifest_for(chunk, 5).to_json())
    path = tmp_path / "m.json"
    path.write_text(json.dumps({**data, "format": 2}), encoding="utf-8")
    assert Manifest.read(path) is None
    path.write_text(json.dumps({**data, "unknown": 1}), encoding="utf-8")
    assert Manifest.read(path) is None
    assert Manifest.read(tmp_path / "missing.json") is None


# -- fetching a chunk -------------------------------------------------------------------------


def test_fetch_chunk_keeps_a_verified_file_then_its_manifest(
    api: DatabentoApi, gw: FakeGateway, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    chunk = chunks()[0]
    item = ChunkPlan(chunk, "missing", records=RECORDS[0], cost_usd=0.1577)

    fetch_chunk(api, raw, item)

    path = data_path(raw, chunk)
    check = inspect_download(path)
    assert (item.status, item.records, check.records, check.complete) == (
        "downloaded",
        RECORDS[0],
        RECORDS[0],
        True,
    )
    manifest = Manifest.read(manifest_path(raw, chunk))
    assert manifest == item.manifest
    assert manifest is not None
    assert (manifest.job, manifest.file, manifest.request) == (
        "es_trades",
        path.name,
        chunk.request(),
    )
    assert (manifest.sha256, manifest.bytes, manifest.records, manifest.cost_usd) == (
        check.sha256,
        path.stat().st_size,
        RECORDS[0],
        0.1577,
    )
    assert manifest.gateway == gw.url
    assert chunk_state(raw, chunk).status == "complete"
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        [path.name, manifest_path(raw, chunk).name]
    )  # no .part left


def test_fetch_chunk_asks_the_count_when_unpriced(
    api: DatabentoApi, gw: FakeGateway, tmp_path: Path
) -> None:
    item = ChunkPlan(chunks()[1], "missing")
    fetch_chunk(api, tmp_path / "raw", item)
    assert item.records == RECORDS[1]
    assert [r.endpoint for r in gw.requests] == [
        "metadata.get_record_count",
        "timeseries.get_range",
    ]
    assert item.manifest is not None
    assert item.manifest.cost_usd is None


def test_fetch_chunk_when_the_download_fails_leaves_no_file_and_no_manifest(
    api: DatabentoApi, gw: FakeGateway, tmp_path: Path
) -> None:
    raw = tmp_path / "raw"
    chunk = chunks()[0]
    place(raw, chunk, b"old", manifest_for(chunk, 3))  # an earlier copy, to be replaced
    gw.script("timeseries.get_range", Scripted(status=403))

    with pytest.raises(SourceError, match="HTTP 403"):
        fetch_chunk(api, raw, ChunkPlan(chunk, "partial", records=RECORDS[0]))

    assert not manifest_path(raw, chunk).exists()  # incomplete from the start of the fetch
    assert not part_path(raw, chunk).exists()
    assert chunk_state(raw, chunk).status == "partial"
